"""Alert attachments on the event bus: an ENRICH plug-in that writes a raised alert's snapshot and
clip from the event's segment before any other plug-in sees the alert, and serves the files."""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

from ..bus import BasePlugin, Stage
from ..events import Event
from . import ROUTE, AttachmentStore, raised

log = logging.getLogger(__name__)


class AttachmentsPlugin(BasePlugin):
    name = "attachments"
    stage = Stage.ENRICH

    def __init__(self, store: AttachmentStore, metrics: Any = None):
        self.store = store
        self.metrics = metrics  # errors{stage="attachment"} and the bytes kept on disk
        self.written = 0
        self.failed = 0

    def start(self) -> None:
        self.store.start()

    def enrich(self, event: Event) -> Event:
        if not raised(event) or event.segment is None:
            return event
        try:
            event = self.store.attach(event, event.segment)
            self.written += 1
        except Exception as error:  # the alert goes out without files rather than not at all
            self.failed += 1
            log.error("%s: no attachments for alert %s: %s", event.source, event.id, error)
            if self.metrics is not None:
                self.metrics.errors.labels("attachment").inc()
        if self.metrics is not None:
            self.metrics.attachment_bytes.set(self.store.total_bytes)
        return event

    def routes(self) -> Sequence[Any]:
        return attachment_routes(self.store)

    def stats(self) -> Optional[dict[str, Any]]:
        return {"written": self.written, "failed": self.failed, "bytes": self.store.total_bytes}


def attachment_routes(store: AttachmentStore, route: str = ROUTE) -> list[Any]:
    """GET /attachments/<source>/<file> (a path that leaves the store's folder is a 404: the store
    refuses it)."""
    from starlette.responses import Response
    from starlette.routing import Route

    def attachment(request: Any) -> Response:
        found = store.read(request.url.path)
        if found is None:
            return Response("not found\n", 404, media_type="text/plain")
        content_type, body = found
        return Response(body, 200, {"Cache-Control": "private, max-age=3600"}, content_type)

    return [Route(route + "{path:path}", attachment)]
