"""Trains SqueezeTime: `python train.py --config configs/k400.py --workdir DIR`.

The command is `python -m squeezetime_jax.train` (its --help lists every flag); this
file runs it from a source checkout.
"""

from absl import flags

from squeezetime_jax import cli
from squeezetime_jax import train as command

flags.adopt_module_key_flags(command)  # --help lists the command's flags

if __name__ == "__main__":
    cli.run(command.main)
