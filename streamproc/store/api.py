"""The store's HTTP read API on the service's port (docs/store.md):

    GET /api/search?q=&source=&since=&until=&limit=&tz=    ranked hits (JSON)
    GET /api/summaries?source=&limit=&tz=                   the newest summaries first (JSON)

`source` may repeat. `since`/`until` take what the CLI takes (30m, 2h, yesterday, ISO times, Unix
seconds); times in answers are Unix seconds plus ISO 8601 with the offset of `tz` (default UTC).
A bad query or time answers 400 with {"error": ...}; a store that is missing, unreadable or
corrupt answers 503 (the service goes on). Routes are Starlette's, run in its worker threads (SQLite
reads block); keys and limits are the HTTP middleware's (streamproc/http).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Optional

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import StreamprocError, UsageError
from .db import StoreError
from .search import Hit, StoreReader
from .timeparse import iso, parse_when, zone

log = logging.getLogger(__name__)

MAX_LIMIT = 200


def hit_json(hit: Hit, tz) -> dict[str, Any]:
    return {
        "id": hit.event_id, "kind": hit.kind, "source": hit.source,
        "start": round(hit.start, 3), "end": round(hit.end, 3),
        "start_iso": iso(hit.start, tz), "end_iso": iso(hit.end, tz),
        "media_start": hit.media_start, "media_end": hit.media_end,
        "text": hit.text, "snippet": hit.snippet_marked(), "snippet_html": hit.snippet_html(),
        "score": round(hit.score, 6), "verdicts": hit.verdicts, "snapshot": hit.snapshot,
    }


def store_routes(store_path: Path, available: Callable[[], bool] = lambda: True) -> list[BaseRoute]:
    """/api/search and /api/summaries over the store at `store_path`; `available()` false (the
    service could not open it) answers 503."""

    def reader() -> StoreReader:
        if not available():
            raise StoreError("the caption store is not available (see the service log)", retryable=True)
        return StoreReader(store_path)

    def search(request: Request) -> Response:
        return _answer(lambda: _search(request, reader))

    def summaries(request: Request) -> Response:
        return _answer(lambda: _summaries(request, reader))

    return [Route("/api/search", search), Route("/api/summaries", summaries)]


def _answer(work: Callable[[], Any]) -> Response:
    try:
        return JSONResponse(work())
    except UsageError as error:
        return JSONResponse({"error": str(error)}, 400)
    except StoreError as error:
        log.warning("caption store API: %s", error)
        return JSONResponse({"error": str(error)}, 503, {"Retry-After": "30"})
    except StreamprocError as error:
        return JSONResponse({"error": str(error)}, 500)


def _arg(request: Request, name: str) -> Optional[str]:
    values = request.query_params.getlist(name)
    return values[-1] if values else None


def _limit(request: Request, default: int) -> int:
    text = _arg(request, "limit") or str(default)
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise UsageError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def _search(request: Request, reader: Callable[[], StoreReader]) -> dict[str, Any]:
    query = (_arg(request, "q") or "").strip()
    if not query:
        raise UsageError("q (the search query) is required")
    tz = zone(_arg(request, "tz") or "UTC")
    since = _time(_arg(request, "since"), tz, end=False)
    until = _time(_arg(request, "until"), tz, end=True)
    sources = [s for s in request.query_params.getlist("source") if s]
    limit = _limit(request, 20)
    with reader() as store:
        hits = store.search(query, sources=sources, since=since, until=until, limit=limit)
    return {"query": query, "count": len(hits), "hits": [hit_json(h, tz) for h in hits]}


def _summaries(request: Request, reader: Callable[[], StoreReader]) -> dict[str, Any]:
    tz = zone(_arg(request, "tz") or "UTC")
    sources = [s for s in request.query_params.getlist("source") if s]
    with reader() as store:
        rows = store.summaries(sources=sources, limit=_limit(request, 20))
    for row in rows:
        row["start_iso"], row["end_iso"] = iso(row["start"], tz), iso(row["end"], tz)
    return {"count": len(rows), "summaries": rows}


def _time(text: Optional[str], tz, *, end: bool) -> Optional[float]:
    return None if not text else parse_when(text, tz=tz, end=end)
