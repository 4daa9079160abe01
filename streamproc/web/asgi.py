"""The web view (and the caption store's read API) on `streamproc serve`'s ASGI server.

`streamproc serve` runs Starlette under uvicorn, not the service's standard-library server, so the
same `Router` routes are hosted through one catch-all Starlette route: each request becomes our
`Request`, runs in a worker thread (the handlers are blocking), and our `Response` goes back as a
Starlette response, streamed when its body is an iterator (server-sent events).

With a config whose caption store is enabled, serve shows the page with search and summaries of
that store (which `streamproc run` fills, possibly in another process); it has no cameras of its
own, so the cameras page says so.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs

from ..service.http import Request, Router

log = logging.getLogger(__name__)


def store_router(store_path: Path, web: Any = None) -> Router:
    """A router with the store's read API and, unless `web.enabled` is false, the web view."""
    from ..store.api import register
    from .hub import SiteHub
    from .routes import mount
    from .plugin import store_timeline

    router = Router()
    register(router.route, store_path)
    if web is None or web.enabled:
        hub = SiteHub([])
        mount(router, hub, timeline=store_timeline(store_path), has_store=True)
    return router


def starlette_routes(router: Router) -> list:
    """Starlette routes that hand every path to `router` (put them after the app's own routes)."""
    from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
    from starlette.responses import Response as StarletteResponse
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def dispatch(request) -> StarletteResponse:
        handler = router.find(request.method, request.url.path)
        if handler is None:
            return StarletteResponse("not found\n", 404, media_type="text/plain")
        ours = Request(
            request.method, request.url.path, parse_qs(request.url.query),
            {k.lower(): v for k, v in request.headers.items()}, await request.body(),
        )
        response = await run_in_threadpool(handler, ours)
        if isinstance(response.body, (bytes, bytearray)):
            return StarletteResponse(bytes(response.body), response.status, response.headers, response.content_type)
        stream = iterate_in_threadpool(iter(response.body))
        return StreamingResponse(stream, response.status, response.headers, response.content_type)

    methods = ["GET", "HEAD", "POST"]
    return [Route("/", dispatch, methods=methods), Route("/{path:path}", dispatch, methods=methods)]


def serve_routes(config: Optional[Any]) -> list:
    """The extra routes `streamproc serve` hosts for `config` (empty without an enabled store)."""
    store = getattr(config, "store", None)
    if store is None or not store.enabled:
        return []
    log.info("serving the caption store %s: /api/search, /api/summaries and the web view at /", store.path)
    return starlette_routes(store_router(Path(store.path), getattr(config, "web", None)))
