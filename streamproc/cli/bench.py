"""`streamproc bench`: performance measured as ratios, side by side in one run. The commands and
their options are one table (streamproc/bench/commands.py); this builds the parser from it."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path


def add_parser(subparsers) -> None:
    from ..bench.commands import COMMANDS
    from .common import HelpFormatter

    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark (ingest, capacity, ...) and print a results table",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  streamproc bench ingest --repeats 3\n  streamproc bench capacity --out docs/capacity.md",
    )
    sub = parser.add_subparsers(dest="bench", metavar="BENCH")
    for command in COMMANDS:
        bench = sub.add_parser(command.name, help=command.help, description=command.description or None,
                               formatter_class=HelpFormatter)
        for option in command.options:
            option.add_to(bench)
        bench.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
        bench.set_defaults(func=_runs(command))
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _runs(command):
    def run(args) -> int:
        from ..bench.commands import runner
        from ..bench.measure import PROGRESS, publish_table

        PROGRESS.setLevel(logging.INFO)  # a long bench says how far it is without -v
        return publish_table(runner(command)(args), args.out)

    return run
