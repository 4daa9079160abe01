"""`streamproc summarize`: a text summary of stored captions by the configured model backend."""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import UsageError
from .search import add_store_args, resolve_window, store_path

EPILOG = """\
examples:
  streamproc summarize --config configs/camera.yaml --since 6h
  streamproc summarize --config configs/camera.yaml --since yesterday --until today --source porch --json

The backend comes from the config's backend section (TPU bmodel or transformers). Captions are
summarised in chunks that fit the model's context, then the partial summaries are combined; the
answer ends with the time ranges it is based on.
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "summarize", help="summarise what the cameras saw over a time window (the caption store + the model)",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
    )
    add_store_args(parser)
    parser.add_argument("--since", default="6h", help="window start (default 6h: six hours ago)")
    parser.add_argument("--until", help="window end (default: now)")
    parser.add_argument("--source", action="append", default=[], help="only this source (repeat; default: all)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="answer length per model call (default 256)")
    parser.add_argument("--context-tokens", type=int, default=None,
                        help="the model's context in tokens (default: the bmodel's sequence length, or 8192)")
    parser.add_argument("--tz", help="time zone for times without an offset and for the output (default: the machine's)")
    parser.add_argument("--json", action="store_true", help="print the summary, its ranges and model calls as JSON")
    parser.set_defaults(func=run)


def run(args) -> int:
    import time

    from ..store.search import StoreReader
    from ..store.summarize import Summarizer
    from ..store.timeparse import zone

    if args.config is None:
        raise UsageError("summarize needs --config (its backend section names the model)")
    from ..config import load_config

    config = load_config(args.config)
    if config.backend is None:
        raise UsageError(f"{args.config} has no backend section: say which model summarises")
    tz = zone(args.tz)
    since, until = resolve_window(args, tz)
    until = time.time() if until is None else until
    with StoreReader(store_path(args)) as store:
        entries = store.entries(since=since, until=until, sources=args.source)
    who = ", ".join(args.source) if args.source else "the cameras"
    backend = None
    try:
        if entries:
            from ..backends.base import create_backend
            from .common import quiet_simulator_if_used

            quiet_simulator_if_used(config)
            backend = create_backend(config.backend)
        summarizer = Summarizer(backend, context_tokens=args.context_tokens, max_new_tokens=args.max_new_tokens,
                                tz=tz) if backend is not None else None
        if summarizer is None:
            from ..store.timeparse import clock

            text = f"Nothing was recorded between {clock(since, tz)} and {clock(until, tz)}."
            summary = None
        else:
            summary = summarizer.summarize(entries, start=since, end=until, who=who)
            text = summary.text
    finally:
        if backend is not None:
            backend.close()
    if args.json:
        out = {"text": text, "start": since, "end": until, "entries": len(entries),
               "ranges": summary.ranges if summary else [],
               "steps": [{"level": s.level, "start": s.start, "end": s.end, "items": len(s.items),
                          "prompt_tokens": s.prompt_tokens} for s in summary.steps] if summary else [],
               "context_tokens": summary.context_tokens if summary else None}
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(text)
        if summary:
            print(f"[{summary.entries} entries, {len(summary.steps)} model calls, context {summary.context_tokens} tokens]",
                  file=sys.stderr)
    return 0
