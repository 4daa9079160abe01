"""`streamproc make-tiny-model DIR [--family qwen3-vl]`: write the seeded tiny model used by tests and the demo."""
from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    from .common import HelpFormatter

    parser = subparsers.add_parser(
        "make-tiny-model",
        help="write a tiny random-weight Qwen2.5-VL or Qwen3-VL checkpoint (a few MB) for tests and demos",
        description=(
            "Write a seeded, random-weight model (~4 M parameters, bf16 safetensors in the family's published "
            "key layout) with an offline-trained tokenizer and processor files. transformers loads it with "
            "HF_HUB_OFFLINE=1 and TPU-MLIR converts it. Its answers are gibberish by design."
        ),
        formatter_class=HelpFormatter,
        epilog="examples:\n  streamproc make-tiny-model /tmp/tiny-qwen\n  streamproc make-tiny-model /tmp/tiny-qwen3 "
        "--family qwen3-vl\n  streamproc make-tiny-model models/tiny --seed 1 --force",
    )
    parser.add_argument("directory", type=Path, metavar="DIR", help="folder to write (created if needed)")
    parser.add_argument("--family", default="qwen2.5-vl", help="model family: qwen2.5-vl or qwen3-vl")
    parser.add_argument("--seed", type=int, default=0, help="weight seed")
    parser.add_argument("--force", action="store_true", help="replace a model already in DIR")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..errors import ModelError, UsageError
    from ..qwen.families import get_family
    from ..qwen.tiny import make_tiny_model

    try:
        family = get_family(args.family)
    except ModelError as exc:
        raise UsageError(f"--family: {exc}") from None
    path = make_tiny_model(args.directory, seed=args.seed, overwrite=args.force, family=args.family)
    print(f"wrote a tiny {family.label} to {path}")
    return 0
