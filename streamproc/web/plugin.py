"""The web view as a plug-in of the event bus: the site hub (every event, the live state of each
camera) plus the page and its API as routes on the service's HTTP port.

The composition root gives it what the page shows besides events: `stats()` (queue depths and
drops), the run-time `control` switches, and the caption store's path for timelines.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..bus import BasePlugin
from ..events import Event
from .hub import SiteHub

log = logging.getLogger(__name__)


class WebPlugin(BasePlugin):
    name = "web"

    def __init__(
        self, sources: Sequence[str], rules: Sequence[str], web: Any, *,
        stats: Callable[[], dict], control: Any = None, store_path: Optional[Path] = None, max_subscribers: int = 32,
    ):
        self.hub = SiteHub(sources, rules, max_subscribers=max_subscribers)
        self.web = web  # config.web: control on/off
        self.stats_of_site = stats
        self.control = control
        self.store_path = store_path
        if control is not None:  # the page shows a paused camera as such
            control.add_listener(lambda kind, name, on: self.hub.set_paused(name, not on) if kind == "source" else None)

    def handle(self, event: Event) -> None:
        self.hub.handle(event)

    def stop(self, timeout_s: float = 10.0) -> None:
        self.hub.stop(timeout_s)

    def routes(self) -> Sequence[Any]:
        from .routes import web_routes

        return web_routes(
            self.hub, stats=self.stats_of_site,
            timeline=store_timeline(self.store_path) if self.store_path is not None else None,
            has_store=self.store_path is not None, control=self.control, allow_control=self.web.control,
        )


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
