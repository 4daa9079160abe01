"""Events on standard output: one readable line per event, or one JSON object per line."""
from __future__ import annotations

import sys
import threading
from typing import IO, Optional

from ..bus import BasePlugin
from .captions import timestamp
from ..events import Event


def format_text(event: Event) -> str:
    data = event.data
    if event.type == "caption":
        seg = data["segment"]
        text = " ".join(data["text"].split())
        return f"[{event.source} {timestamp(seg['start'], '.')}-{timestamp(seg['end'], '.')}] {text}"
    if event.type == "alert":
        reason = f": {data['reason']}" if data.get("reason") else ""
        return f"[{event.source}] ALERT {data['rule']} {data['transition']} ({data['state']}){reason}"
    if event.type == "status":
        detail = f" ({data['detail']})" if data.get("detail") else ""
        return f"[{event.source}] {data['state']}{detail}"
    if event.type == "service":
        model = data["model"]
        return f"[service] {data['state']} (model {model['loaded']}/{model['of']})"
    if event.type == "unchanged":  # the scene-change gate skipped the segment
        seg = data["segment"]
        return f"[{event.source} {timestamp(seg['start'], '.')}-{timestamp(seg['end'], '.')}] (unchanged)"
    return f"[stats] {event.to_json()}"


class StdoutSink(BasePlugin):
    name = "stdout"

    def __init__(self, format: str = "text", stream: Optional[IO[str]] = None):
        if format not in ("text", "json"):
            raise ValueError(f"unknown stdout format {format!r}")
        self.format = format
        self.stream = stream
        self._lock = threading.Lock()  # lines from several sources must not interleave

    def handle(self, event: Event) -> None:
        if self.format == "text" and event.type == "stats":
            return  # a stats dump every few seconds would drown the captions
        line = event.to_json() if self.format == "json" else format_text(event)
        stream = self.stream or sys.stdout
        with self._lock:
            stream.write(line + "\n")  # this sink's whole job is stdout
            stream.flush()

    def flush(self, timeout_s: float = 10.0) -> bool:
        (self.stream or sys.stdout).flush()
        return True
