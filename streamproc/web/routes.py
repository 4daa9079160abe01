"""The web view's routes on the service's HTTP port (service/http.py).

    GET  /                                  the page (plain HTML/CSS/JS shipped in the package)
    GET  /static/NAME                       its files
    GET  /api/site                          what the page may show: store? control? cameras
    GET  /api/cameras                       per camera: state, gate, latest caption, rules, queue
    GET  /api/cameras/NAME/snapshot.jpg     the latest snapshot
    GET  /api/cameras/NAME/timeline         captions, unchanged spans and alerts, newest first
    GET  /api/events                        new events as server-sent events
    POST /api/cameras/NAME/pause|resume     only with `web.control: true`, and the API key

Search and summaries are the caption store's own routes (/api/search, /api/summaries), which the
page calls when a store is configured. Everything is read-only unless control is enabled, and
then a control request needs the API key (`Authorization: Bearer KEY` or `X-API-Key: KEY`).
"""
from __future__ import annotations

import hmac
import logging
from importlib import resources
from typing import Any, Callable, Optional, Protocol

from ..service.http import Request, Response, Router
from .hub import SiteHub

log = logging.getLogger(__name__)

_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


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


def _camera_path(path: str) -> tuple[str, str]:
    """/api/cameras/NAME/ACTION -> (NAME, ACTION); NAME may not contain a slash."""
    rest = path[len("/api/cameras/"):]
    name, _, action = rest.partition("/")
    return name, action


def mount(
    http: Router,
    hub: SiteHub,
    *,
    stats: Optional[Callable[[], dict]] = None,
    timeline: Optional[Timeline] = None,
    has_store: bool = False,
    control: Optional[CameraControl] = None,
    allow_control: bool = False,
    api_key: Optional[str] = None,
) -> None:
    """Add the web view's routes to `http`. `stats` gives queue depths and drops (the pipeline's
    stats()); `timeline(source, limit)` reads the caption store when there is one."""
    control_on = bool(allow_control and control is not None)

    def page(request: Request) -> Response:
        found = _static("index.html")
        assert found is not None, "streamproc/web/static/index.html is part of the package"
        return Response(200, found[1], found[0], {"Cache-Control": "no-cache"})

    def static(request: Request) -> Response:
        found = _static(request.path[len("/static/"):])
        if found is None:
            return Response.text("not found\n", 404)
        return Response(200, found[1], found[0], {"Cache-Control": "max-age=300"})

    def site(request: Request) -> Response:
        return Response.json({
            "store": has_store,
            "control": control_on,
            "key_required": bool(control_on and api_key),
            "cameras": [c["name"] for c in hub.cameras()],
        })

    def cameras(request: Request) -> Response:
        views = hub.cameras()
        sources = ((stats() if stats else {}) or {}).get("sources", {})
        for view in views:
            counters = sources.get(view["name"], {})
            view["queued"] = counters.get("queued", 0)
            view["dropped"] = counters.get("dropped", 0)
            if counters.get("state") in ("failed", "finished", "stopped") and view["state"] == "starting":
                view["state"] = "offline"
        return Response.json({"cameras": views})

    def camera(request: Request) -> Response:
        name, action = _camera_path(request.path)
        if action == "snapshot.jpg":
            jpeg = hub.snapshot_jpeg(name)
            if jpeg is None:
                return Response.json({"error": f"no snapshot of {name!r} yet"}, 404)
            return Response(200, "image/jpeg", jpeg, {"Cache-Control": "no-cache"})
        if action == "timeline":
            try:
                limit = max(1, min(500, int(request.arg("limit", "100") or 100)))
            except ValueError:
                return Response.json({"error": "limit must be a whole number"}, 400)
            items = timeline(name, limit) if timeline is not None else None
            if items is None:
                items = hub.timeline(name, limit)
            if items is None:
                return Response.json({"error": f"no camera named {name!r}"}, 404)
            return Response.json({"source": name, "items": items})
        return Response.json({"error": "not found"}, 404)

    def events(request: Request) -> Response:
        return Response(200, "text/event-stream; charset=utf-8", hub.subscribe())

    def command(request: Request) -> Response:
        name, action = _camera_path(request.path)
        if not control_on:
            return Response.json({"error": "control from the web view is off (web.control)"}, 403)
        if api_key and not _key_ok(request, api_key):
            return Response.json({"error": "a valid API key is required"}, 401, {"WWW-Authenticate": "Bearer"})
        if name not in {c["name"] for c in hub.cameras()}:
            return Response.json({"error": f"no camera named {name!r}"}, 404)
        if action not in ("pause", "resume"):
            return Response.json({"error": "the action is pause or resume"}, 404)
        assert control is not None
        (control.pause if action == "pause" else control.resume)(name)
        hub.set_paused(name, action == "pause")
        log.info("web view: %s %sd", name, action)
        return Response.json({"source": name, "paused": action == "pause"})

    http.route("GET", "/", page)
    http.route("GET", "/index.html", page)
    http.route("GET", "/static/", static, prefix=True)
    http.route("GET", "/api/site", site)
    http.route("GET", "/api/cameras", cameras)
    http.route("GET", "/api/cameras/", camera, prefix=True)
    http.route("GET", "/api/events", events)
    http.route("POST", "/api/cameras/", command, prefix=True)


def _key_ok(request: Request, api_key: str) -> bool:
    given = request.headers.get("x-api-key") or ""
    auth = request.headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return bool(given) and hmac.compare_digest(given.encode(), api_key.encode())
