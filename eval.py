"""Evaluates SqueezeTime checkpoints: `python eval.py --config ... --checkpoint PATH`.

The command is `python -m squeezetime_jax.evaluate` (its --help lists every flag);
this file runs it from a source checkout.
"""

from absl import flags

from squeezetime_jax import cli
from squeezetime_jax import evaluate as command

flags.adopt_module_key_flags(command)  # --help lists the command's flags

if __name__ == "__main__":
    cli.run(command.main)
