"""`streamproc search QUERY`: ranked full-text search over the caption store."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from ..errors import UsageError

EPILOG = """\
examples:
  streamproc search --config configs/camera.yaml "red car"
  streamproc search --store captions.sqlite '"person at the door"' --since yesterday --until today
  streamproc search --store captions.sqlite 'deliv*' --source porch --since 2h --json

query syntax (SQLite FTS5): words must all match; "a phrase"; prefix*; a OR b; a NOT b; NEAR(a b).
times: 30m, 2h, 7d (ago), now, today, yesterday, ISO (2026-11-29T14:00, 2026-11-29T14:00+01:00), Unix seconds.
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "search", help="search what the cameras saw (the caption store)",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
    )
    parser.add_argument("query", help="FTS5 query: words, \"a phrase\", prefix*, OR, NOT")
    add_store_args(parser)
    parser.add_argument("--source", action="append", default=[], help="only this source (repeat for several)")
    parser.add_argument("--since", help="only entries that start at or after this time (e.g. 2h, yesterday)")
    parser.add_argument("--until", help="only entries that start at or before this time (default: now)")
    parser.add_argument("--limit", type=int, default=20, help="results at most (default 20)")
    parser.add_argument("--tz", help="time zone of times given without an offset and of the output "
                        "(IANA name or UTC; default: the machine's)")
    parser.add_argument("--json", action="store_true", help="one JSON object with every hit instead of text")
    parser.set_defaults(func=run)


def add_store_args(parser) -> None:
    parser.add_argument("--config", type=Path, help="service config: its store.path is used")
    parser.add_argument("--store", type=Path, help="the store file (overrides --config; "
                        "default: store.path's default, streamproc-captions.sqlite)")


def store_path(args) -> Path:
    if args.store is not None:
        return args.store
    if args.config is not None:
        from ..config import load_config

        return load_config(args.config).store.path
    from ..config.store import StoreConfig

    return StoreConfig().path


def resolve_window(args, tz, *, default_since: Optional[str] = None) -> tuple[Optional[float], Optional[float]]:
    from ..store.timeparse import parse_when

    since_text = args.since or default_since
    since = parse_when(since_text, tz=tz) if since_text else None
    until = parse_when(args.until, tz=tz, end=True) if args.until else None
    if since is not None and until is not None and since > until:
        raise UsageError("--since is after --until")
    return since, until


def run(args) -> int:
    from ..store.api import hit_json
    from ..store.search import StoreReader
    from ..store.timeparse import iso, zone

    if not 1 <= args.limit <= 10_000:
        raise UsageError("--limit must be from 1 to 10000")
    tz = zone(args.tz)
    since, until = resolve_window(args, tz)
    with StoreReader(store_path(args)) as store:
        hits = store.search(args.query, sources=args.source, since=since, until=until, limit=args.limit)
    if args.json:
        print(json.dumps({"query": args.query, "count": len(hits), "hits": [hit_json(h, tz) for h in hits]},
                         ensure_ascii=False))
        return 0
    if not hits:
        print("no matches", file=sys.stderr)
        return 0
    bold = sys.stdout.isatty()
    for hit in hits:
        snippet = hit.snippet_marked("\033[1m", "\033[0m") if bold else hit.snippet_marked()
        kind = "" if hit.kind == "caption" else f" {hit.kind}"
        print(f"{iso(hit.start, tz)} .. {iso(hit.end, tz)[11:]}  {hit.source}{kind}  {snippet}")
    return 0
