"""Checkpoint conversion between the released PyTorch format and this library.

  python -m squeezetime_jax.convert from-torch IN.pth OUT_DIR [--drop-head --num-classes N]
  python -m squeezetime_jax.convert to-torch CKPT OUT.pth [--plain]

from-torch infers the model config from the checkpoint and writes an Orbax checkpoint
of params and batch_stats plus model_config.json. to-torch writes a file the released
PyTorch model (or squeezetime_jax.interop.torch_model) loads with strict=True.
"""

from __future__ import annotations

import argparse
import sys

from squeezetime_jax.checkpoints.errors import CheckpointError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m squeezetime_jax.convert", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    src = commands.add_parser("from-torch", help="PyTorch .pth -> converted checkpoint dir")
    src.add_argument("input", metavar="IN.pth")
    src.add_argument("output", metavar="OUT_DIR")
    src.add_argument(
        "--drop-head",
        action="store_true",
        help="discard the classifier and initialize a new one (needs --num-classes)",
    )
    src.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="classes of the converted model (must match the checkpoint "
        "unless --drop-head)",
    )
    src.add_argument("--seed", type=int, default=0, help="seed of a re-initialized head")
    dst = commands.add_parser("to-torch", help="checkpoint -> PyTorch .pth")
    dst.add_argument(
        "input",
        metavar="CKPT",
        help="converted checkpoint directory, train.py workdir (latest step) or .pth",
    )
    dst.add_argument("output", metavar="OUT.pth")
    dst.add_argument(
        "--plain",
        action="store_true",
        help="write the bare state_dict instead of {'state_dict', 'meta'}",
    )
    return parser


def from_torch(args) -> None:
    from squeezetime_jax.checkpoints.converted import save_converted
    from squeezetime_jax.interop.torch_checkpoints import load_torch_checkpoint

    if args.drop_head and args.num_classes is None:
        raise ValueError("--drop-head needs --num-classes N")
    conversion = load_torch_checkpoint(
        args.input, drop_head=args.drop_head, num_classes=args.num_classes, seed=args.seed
    )
    save_converted(args.output, conversion, source=args.input)
    for note in conversion.notes:
        print(note)
    print(f"wrote {args.output}")


def to_torch(args) -> None:
    from squeezetime_jax.checkpoints.restore import restore
    from squeezetime_jax.interop.torch_checkpoints import save_torch_checkpoint

    conversion = restore(args.input)
    save_torch_checkpoint(
        args.output,
        conversion.variables,
        conversion.config,
        plain=args.plain,
        meta={"source": args.input},
    )
    print(f"wrote {args.output}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        {"from-torch": from_torch, "to-torch": to_torch}[args.command](args)
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
