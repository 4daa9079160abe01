"""The `streamproc` command line. One module per command; heavy imports happen inside commands.

Exit codes: 0 success, 1 unexpected error, 2 bad usage or config, 3 source error, 4 model error,
5 backend/device error, 6 sink error, 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

from ..errors import StreamprocError
from .common import setup_logging

# command name -> module in this package that defines `add_parser(subparsers)`.
COMMANDS = {
    "run": "run",
    "caption": "caption",
    "chat": "chat",
    "serve": "serve",
    "demo": "demo",
    "bench": "bench",
    "doctor": "doctor",
    "make-tiny-model": "make_tiny_model",
    "convert": "convert",
    "runtime": "runtime",
    "search": "search",
    "summarize": "summarize",
    "worker": "worker",
}

EPILOG = """\
examples:
  streamproc demo                         # sample video + tiny model, end to end
  streamproc run configs/camera.yaml      # the service
  streamproc caption videos/*.mp4 --model Qwen/Qwen2.5-VL-3B-Instruct --out captions/
  streamproc doctor configs/camera.yaml   # check packages, runtime, model, broker, sources
exit codes: 0 ok, 1 unexpected error, 2 usage/config, 3 source, 4 model, 5 backend/device, 6 sink, 130 interrupted
"""


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The whole command line; with `only`, that command's parser in full and the others as bare
    names: each command module imports what its options need (bench: asyncio), and a command
    should not pay for the others' (`doctor` is meant to take well under 3 s on a busy box)."""
    parser = argparse.ArgumentParser(
        prog="streamproc",
        description="Watch cameras and video files and turn what they show into text events.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"streamproc {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("--log-format", choices=["text", "json"], default="text", help="log lines on stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        if only is not None and name != only:
            subparsers.add_parser(name)
            continue
        module = importlib.import_module(f".{module_name}", __name__)
        module.add_parser(subparsers)
    return parser


def _command_in(argv: Sequence[str]) -> Optional[str]:
    """The command named on the command line (the first word that is one), or None."""
    return next((word for word in argv if word in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(_command_in(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(max(args.verbose, getattr(args, "default_verbosity", 0)), args.log_format)
    try:
        return int(args.func(args) or 0)
    except StreamprocError as error:
        logging.getLogger("streamproc").debug("command failed", exc_info=True)
        print(f"streamproc: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("streamproc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
