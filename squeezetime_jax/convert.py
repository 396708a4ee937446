"""Checkpoint conversion between the released PyTorch format and this library.

  python -m squeezetime_jax.convert from-torch IN.pth OUT_DIR [--drop_head --num_classes N]
  python -m squeezetime_jax.convert to-torch CKPT OUT.pth [--plain]
  python -m squeezetime_jax.convert from-release {in1k,k400,k600,hmdb51} OUT_DIR

from-torch infers the model config from the checkpoint and writes a converted
checkpoint directory (Orbax variables plus model_config.json). to-torch reads a
converted directory, a train.py workdir (its latest step) or a .pth, and writes a file
the released PyTorch model (or squeezetime_jax.interop.torch_model) loads with
strict=True. Paths may be local or gs:// URLs. from-release downloads a released
checkpoint once (into the cache of squeezetime_jax.interop.release) and converts it.
Class names and clip settings (metadata.json, the .pth meta) travel with the weights
in every direction.
"""

from __future__ import annotations

import sys
from typing import Sequence

from squeezetime_jax import cli
from squeezetime_jax.checkpoints.errors import CheckpointError

FLAGS = cli.Flags("python -m squeezetime_jax.convert", __doc__)
DROP_HEAD = FLAGS.boolean(
    "drop_head",
    False,
    "from-torch: discard the classifier and initialize a new one (needs --num_classes).",
)
NUM_CLASSES = FLAGS.integer(
    "num_classes",
    None,
    "from-torch: classes of the converted model (must match the checkpoint unless "
    "--drop_head).",
)
SEED = FLAGS.integer("seed", 0, "from-torch: seed of a re-initialized head.")
PLAIN = FLAGS.boolean(
    "plain", False, "to-torch: write the bare state_dict instead of {'state_dict', 'meta'}."
)


def from_torch(source: str, output: str) -> None:
    from squeezetime_jax.checkpoints.converted import save_converted
    from squeezetime_jax.interop.torch_checkpoints import load_torch_checkpoint

    if DROP_HEAD.value and NUM_CLASSES.value is None:
        raise ValueError("--drop_head needs --num_classes N")
    conversion = load_torch_checkpoint(
        source, drop_head=DROP_HEAD.value, num_classes=NUM_CLASSES.value, seed=SEED.value
    )
    save_converted(output, conversion, source=source)
    for note in conversion.notes:
        print(note)
    print(f"wrote {output}")


def from_release(name: str, output: str) -> None:
    from squeezetime_jax.checkpoints.converted import save_converted
    from squeezetime_jax.interop import release

    conversion = release.load(name)
    save_converted(output, conversion, source=release.url(release.get(name)))
    for note in conversion.notes:
        print(note)
    print(f"wrote {output}")


def to_torch(source: str, output: str) -> None:
    from squeezetime_jax.checkpoints.restore import restore
    from squeezetime_jax.interop.torch_checkpoints import save_torch_checkpoint

    restored = restore(source)
    save_torch_checkpoint(
        output,
        restored.variables,
        restored.config,
        plain=PLAIN.value,
        meta={"source": source},
        metadata=restored.metadata,
    )
    print(f"wrote {output}")


COMMANDS = {"from-torch": from_torch, "to-torch": to_torch, "from-release": from_release}


@cli.exit_on_usage_error
def main(argv: Sequence[str] | None = None) -> int:
    positional = FLAGS.parse(argv)
    if len(positional) != 3 or positional[0] not in COMMANDS:
        raise cli.UsageError(
            f"expected one of {', '.join(COMMANDS)} then INPUT OUTPUT; got {positional}"
        )
    command, source, output = positional
    try:
        COMMANDS[command](source, output)
    except (CheckpointError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ImportError as error:
        print(
            f"error: {error} (PyTorch files need the torch extra: pip install "
            "'squeezetime_jax[torch]')",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
