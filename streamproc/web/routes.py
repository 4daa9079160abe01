"""The web view's routes (Starlette), for either port (`streamproc run`'s, or `serve`'s with a store).

    GET  /                                  the page (plain HTML/CSS/JS shipped in the package)
    GET  /static/NAME                       its files
    GET  /api/site                          what the page may show: store? control? cameras
    GET  /api/cameras                       per camera: state, gate, latest caption, rules, queue
    GET  /api/cameras/NAME/snapshot.jpg     the latest snapshot
    GET  /api/cameras/NAME/timeline         captions, unchanged spans and alerts, newest first
    GET  /api/events                        new events as server-sent events
    POST /api/cameras/NAME/pause|resume     only with `web.control: true`

Search and summaries are the caption store's own routes (store/api.py). Keys, the Host check and
the cross-site rules are the HTTP middleware's (streamproc/http): the page and its static files
are the only public routes (they hold no data; the page asks for the key when the API says 401).
Blocking work (snapshot encoding, store reads) runs in Starlette's worker threads; the event feed
runs on the event loop.
"""
from __future__ import annotations

import logging
from importlib import resources
from typing import Any, Callable, Optional, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..http import PublicRoute
from .hub import SiteHub, TooManySubscribers

log = logging.getLogger(__name__)

_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
ENDED_STATES = ("failed", "finished", "stopped")


class CameraControl(Protocol):
    """What the page's pause/resume buttons call (the pipeline's run-time control)."""

    def pause(self, source: str) -> None: ...

    def resume(self, source: str) -> None: ...


Timeline = Callable[[str, int], Optional[list[dict[str, Any]]]]


def _static(name: str) -> Optional[tuple[bytes, str]]:
    suffix = name[name.rfind("."):] if "." in name else ""
    kind = _STATIC_TYPES.get(suffix)
    if kind is None or "/" in name or "\\" in name or name.startswith("."):
        return None
    try:
        data = resources.files(__package__).joinpath("static").joinpath(name).read_bytes()
    except (FileNotFoundError, IsADirectoryError, OSError):
        return None
    return data, kind


def _error(message: str, status: int, headers: Optional[dict[str, str]] = None) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers)


class WebView:
    """The page's endpoints over a hub (see `web_routes`)."""

    def __init__(self, hub: SiteHub, stats: Optional[Callable[[], dict]], timeline: Optional[Timeline],
                 has_store: bool, control: Optional[CameraControl], allow_control: bool, heartbeat_s: float):
        self.hub, self.stats, self.timeline, self.has_store = hub, stats, timeline, has_store
        self.control = control if allow_control else None
        self.heartbeat_s = heartbeat_s

    def page(self, request: Request) -> Response:
        found = _static("index.html")
        assert found is not None, "streamproc/web/static/index.html is part of the package"
        return Response(found[0], 200, {"Cache-Control": "no-cache"}, found[1])

    def static(self, request: Request) -> Response:
        found = _static(request.path_params["name"])
        if found is None:
            return Response("not found\n", 404, media_type="text/plain")
        return Response(found[0], 200, {"Cache-Control": "max-age=300"}, found[1])

    def site(self, request: Request) -> Response:
        return JSONResponse({"store": self.has_store, "control": self.control is not None,
                             "cameras": [c["name"] for c in self.hub.cameras()]})

    def cameras(self, request: Request) -> Response:
        views = self.hub.cameras()
        sources = ((self.stats() if self.stats else {}) or {}).get("sources", {})
        for view in views:
            counters = sources.get(view["name"], {})
            view["queued"] = counters.get("queued", 0)
            view["dropped"] = counters.get("dropped", 0)
            if counters.get("state") in ENDED_STATES and view["state"] == "starting":
                view["state"] = "offline"
        return JSONResponse({"cameras": views})

    def snapshot(self, request: Request) -> Response:
        name = request.path_params["name"]
        jpeg = self.hub.snapshot_jpeg(name)
        if jpeg is None:
            return _error(f"no snapshot of {name!r} yet", 404)
        return Response(jpeg, 200, {"Cache-Control": "no-cache"}, "image/jpeg")

    def camera_timeline(self, request: Request) -> Response:
        name = request.path_params["name"]
        text = request.query_params.get("limit", "100")
        if not text.isdigit():
            return _error("limit must be a whole number", 400)
        limit = max(1, min(500, int(text)))
        items = self.timeline(name, limit) if self.timeline is not None else None
        if items is None:
            items = self.hub.timeline(name, limit)
        if items is None:
            return _error(f"no camera named {name!r}", 404)
        return JSONResponse({"source": name, "items": items})

    async def events(self, request: Request) -> Response:
        try:
            feed = self.hub.subscribe(self.heartbeat_s)
        except TooManySubscribers as error:
            return _error(f"{error}: try again later", 503, {"Retry-After": "30"})
        return StreamingResponse(feed, 200, {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                                 "text/event-stream; charset=utf-8")

    def command(self, request: Request) -> Response:
        name, action = request.path_params["name"], request.path_params["action"]
        if self.control is None:
            return _error("control from the web view is off (web.control)", 403)
        if name not in {c["name"] for c in self.hub.cameras()}:
            return _error(f"no camera named {name!r}", 404)
        if action not in ("pause", "resume"):
            return _error("the action is pause or resume", 404)
        (self.control.pause if action == "pause" else self.control.resume)(name)
        self.hub.set_paused(name, action == "pause")
        log.info("web view: %s %sd", name, action)
        return JSONResponse({"source": name, "paused": action == "pause"})


def web_routes(
    hub: SiteHub,
    *,
    stats: Optional[Callable[[], dict]] = None,
    timeline: Optional[Timeline] = None,
    has_store: bool = False,
    control: Optional[CameraControl] = None,
    allow_control: bool = False,
    heartbeat_s: float = 15.0,
) -> list[BaseRoute]:
    """The page and its API over `hub`. `stats` gives queue depths and drops (the pipeline's
    stats()); `timeline(source, limit)` reads the caption store when there is one; pause/resume
    work only with `allow_control` and a `control`."""
    view = WebView(hub, stats, timeline, has_store, control, allow_control, heartbeat_s)
    return [
        PublicRoute("/", view.page),
        PublicRoute("/index.html", view.page),
        PublicRoute("/static/{name}", view.static),
        Route("/api/site", view.site),
        Route("/api/cameras", view.cameras),
        Route("/api/cameras/{name}/snapshot.jpg", view.snapshot),
        Route("/api/cameras/{name}/timeline", view.camera_timeline),
        Route("/api/events", view.events),
        Route("/api/cameras/{name}/{action}", view.command, methods=["POST"]),
    ]
