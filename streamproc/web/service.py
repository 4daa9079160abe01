"""The web view in the running service (`streamproc run`).

The pipeline calls `add_web_hub` once its sinks are started and before its workers start (so the
hub sees every event), and `mount_web` once the caption store's routes exist (so the page knows
whether search and summaries are there). The page is served on the service's HTTP port
(`http:`); without that port there is no web view.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from .hub import SiteHub

log = logging.getLogger(__name__)


def add_web_hub(pipeline: Any) -> Optional[SiteHub]:
    """A started hub appended to `pipeline.sinks`, or None when the web view is off."""
    if not pipeline.config.web.enabled or not pipeline._serve_metrics:
        return None
    hub = SiteHub([s.name for s in pipeline.sources], [r.name for r in pipeline.config.rules],
                  max_subscribers=pipeline.config.http.limits.max_event_subscribers)
    hub.start()
    pipeline.sinks.append(hub)
    control = getattr(pipeline, "control", None)
    if control is not None:
        control.add_listener(lambda kind, name, on: hub.set_paused(name, not on) if kind == "source" else None)
    return hub


def mount_web(pipeline: Any, hub: Optional[SiteHub]) -> None:
    if hub is None or pipeline.health_server is None:
        return
    from .routes import web_routes

    cfg = pipeline.config.web
    store_sink = next((s for s in pipeline.sinks if getattr(s, "name", "") == "store"), None)
    has_store = bool(store_sink is not None and getattr(store_sink, "available", False))
    pipeline.health_server.add_routes(web_routes(
        hub,
        stats=pipeline.stats,
        timeline=store_timeline(Path(store_sink.config.path)) if has_store else None,
        has_store=has_store,
        control=getattr(pipeline, "control", None),
        allow_control=cfg.control,
    ))
    log.info("web view on %s/%s", pipeline.health_server.http.url, " (control enabled)" if cfg.control else "")


def store_timeline(path: Path):
    """`timeline(source, limit)` over the caption store: captions, unchanged spans and alerts as
    their events were stored, newest first. None (the hub's recent events are used) if the store
    cannot be read."""

    def timeline(source: str, limit: int) -> Optional[list[dict[str, Any]]]:
        from ..store.search import StoreReader

        try:
            with StoreReader(path) as store:
                items = store.recent(source, limit=limit)
        except Exception as error:  # the page falls back to what the hub holds
            log.warning("web view: the caption store could not be read: %s", error)
            return None
        return items or None

    return timeline
