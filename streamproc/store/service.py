"""The store in the running service: the HTTP read API and the summary scheduler.

The pipeline makes the store sink (sinks/base.py create_sinks) and calls `start_store_feature`
once its sinks are started and before its HTTP server starts; `stop()` comes before the sinks close.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

log = logging.getLogger(__name__)


class StoreFeature:
    def __init__(self, sink: Any, scheduler: Any):
        self.sink = sink
        self.scheduler = scheduler

    def stats(self) -> dict[str, Any]:
        return dict(self.scheduler.counters) if self.scheduler is not None else {}

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()


def start_store_feature(pipeline: Any) -> Optional[StoreFeature]:
    """Routes on `pipeline.health_server` (if any) and scheduled summaries (if configured)."""
    sink = next((s for s in pipeline.sinks if getattr(s, "name", "") == "store"), None)
    if sink is None:
        if pipeline.config.summaries:
            log.warning("summaries are configured but the caption store is off (store.enabled): none will be made")
        return None
    if pipeline.health_server is not None:
        from .api import store_routes

        pipeline.health_server.add_routes(store_routes(sink.config.path, lambda: sink.available))
    scheduler = None
    if pipeline.config.summaries and sink.available:
        from .scheduler import SummaryScheduler

        scheduler = SummaryScheduler(
            pipeline.config.summaries, sink.config.path, [s.name for s in pipeline.sources],
            pipeline._backend_factory, pipeline.emit, before_read=lambda: sink.flush(5.0),
        )
        scheduler.start()
    return StoreFeature(sink, scheduler)
