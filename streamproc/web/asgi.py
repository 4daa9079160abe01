"""The web view and the caption store's read API on `streamproc serve`'s port.

With a config whose caption store is enabled, serve shows the page with search and summaries of
that store (which `streamproc run` fills, possibly in another process); it has no cameras of its
own, so the cameras page says so. The routes are the same builders `run` mounts, on the same
HTTP stack (streamproc/http), so the same keys and limits guard them.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)


def store_site_routes(store_path: Path, web: Any = None, max_subscribers: int = 32) -> list:
    """The store's read API and, unless `web.enabled` is false, the web view over it."""
    from ..store.api import store_routes
    from .hub import SiteHub
    from .plugin import store_timeline
    from .routes import web_routes

    routes = store_routes(store_path)
    if web is None or web.enabled:
        hub = SiteHub([], max_subscribers=max_subscribers)
        routes += web_routes(hub, timeline=store_timeline(store_path), has_store=True)
    return routes


def serve_routes(config: Optional[Any]) -> list:
    """The extra routes `streamproc serve` hosts for `config` (none without an enabled store)."""
    store = getattr(config, "store", None)
    if store is None or not store.enabled:
        return []
    log.info("serving the caption store %s: /api/search, /api/summaries and the web view at /", store.path)
    return store_site_routes(Path(store.path), config.web, config.http.limits.max_event_subscribers)
