"""The caption store as a plug-in of the event bus: the sink that writes events into SQLite
(`sink.py`), its read API on the service's HTTP port (`api.py`), and the summary scheduler
(`scheduler.py`), which asks a backend of its own and publishes `summary` events on the bus."""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

from ..config.store import StoreConfig
from ..events import Event
from .sink import StoreSink

log = logging.getLogger(__name__)


class StorePlugin(StoreSink):
    def __init__(
        self, config: StoreConfig, *, summaries: Sequence[Any] = (), sources: Sequence[str] = (),
        backend_factory: Optional[Callable[[], Any]] = None, publish: Optional[Callable[[Event], None]] = None,
    ):
        super().__init__(config)
        self.summaries = list(summaries)
        self.sources = list(sources)
        self.backend_factory = backend_factory
        self.publish = publish
        self.scheduler: Any = None

    def start(self) -> None:
        super().start()
        if not (self.summaries and self.available and self.backend_factory and self.publish):
            return
        from .scheduler import SummaryScheduler

        self.scheduler = SummaryScheduler(
            self.summaries, self.config.path, self.sources, self.backend_factory, self.publish,
            before_read=lambda: self.flush(5.0),
        )
        self.scheduler.start()

    def routes(self) -> Sequence[Any]:  # /api/search, /api/summaries (503 while the store cannot be read)
        from .api import store_routes

        return store_routes(self.config.path, lambda: self.available)

    def stats(self) -> Optional[dict[str, Any]]:
        stats = super().stats() or {}
        if self.scheduler is not None:
            stats["summaries"] = dict(self.scheduler.counters)
        return stats

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.scheduler is not None:  # scheduled summaries end before the store closes
            self.scheduler.stop()
            self.scheduler = None
        super().stop(timeout_s)
