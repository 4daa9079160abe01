"""The plug-ins a config enables besides the sinks (streamproc.sinks.create_sinks): the caption
store, alert attachments and the metrics counter, built (not started) by the composition root."""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

from ..bus import BasePlugin, Plugin
from ..events import Event

log = logging.getLogger(__name__)


def store_plugin(
    config: Any, sources: Sequence[str], backend_factory: Optional[Callable[[], Any]],
    publish: Optional[Callable[[Event], None]],
) -> Optional[Plugin]:
    """The caption store (with its read API and scheduled summaries), when `store.enabled`."""
    store = config.store
    if store is None or not store.enabled:
        if config.summaries:
            log.warning("summaries are configured but the caption store is off (store.enabled): none will be made")
        return None
    from ..store.plugin import StorePlugin

    return StorePlugin(store, summaries=config.summaries, sources=sources, backend_factory=backend_factory, publish=publish)


def attachments_plugin(config: Any, metrics: Any) -> Optional[Plugin]:
    """Alert snapshots and clips (`sinks.attachments`), when enabled."""
    section = config.sinks.attachments
    if section is None or not section.enabled:
        return None
    from ..attachments import AttachmentStore
    from ..attachments.plugin import AttachmentsPlugin

    return AttachmentsPlugin(AttachmentStore(section, [s for s in config.sources if s.enabled]), metrics)


class MetricsPlugin(BasePlugin):
    """Counts every event in Prometheus (alerts by rule and transition, the rule's state gauge)."""

    name = "metrics"

    def __init__(self, metrics: Any):
        self.metrics = metrics

    def handle(self, event: Event) -> None:
        self.metrics.events.labels(event.type).inc()
        if event.type == "alert":
            rule, transition = event.data["rule"], event.data["transition"]
            self.metrics.alerts.labels(event.source, rule, transition).inc()
            self.metrics.rule_on.labels(event.source, rule).set(1 if transition == "raised" else 0)
