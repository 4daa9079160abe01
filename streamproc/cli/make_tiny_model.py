"""`streamproc make-tiny-model DIR`: write the seeded tiny Qwen2.5-VL used by tests and the demo."""
from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    from .common import HelpFormatter

    parser = subparsers.add_parser(
        "make-tiny-model",
        help="write a tiny random-weight Qwen2.5-VL checkpoint (a few MB) for tests and demos",
        description=(
            "Write a seeded, random-weight Qwen2.5-VL (~4 M parameters, bf16 safetensors in the original "
            "key layout) with an offline-trained tokenizer and processor files. transformers loads it with "
            "HF_HUB_OFFLINE=1 and TPU-MLIR converts it. Its answers are gibberish by design."
        ),
        formatter_class=HelpFormatter,
        epilog="examples:\n  streamproc make-tiny-model /tmp/tiny-qwen\n  streamproc make-tiny-model models/tiny --seed 1 --force",
    )
    parser.add_argument("directory", type=Path, metavar="DIR", help="folder to write (created if needed)")
    parser.add_argument("--seed", type=int, default=0, help="weight seed")
    parser.add_argument("--force", action="store_true", help="replace a model already in DIR")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..qwen.tiny import make_tiny_model

    path = make_tiny_model(args.directory, seed=args.seed, overwrite=args.force)
    print(f"wrote a tiny Qwen2.5-VL to {path}")
    return 0
