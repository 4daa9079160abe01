"""The site's live state for the web view, kept by a sink.

`SiteHub` receives every event like any other sink and keeps, per camera: its source state, what
the gate last did (describing or skipping), the latest caption and its snapshot frame, the rule
states, and a ring of recent events (the timeline when there is no caption store). Browsers
subscribe to a feed of new events (server-sent events): each subscriber has a bounded queue of its
own, and a slow browser loses its oldest events (counted in `dropped`), never the pipeline's time.
The feed runs on the HTTP server's event loop (no thread per browser), and the number of
subscribers is capped, so browsers on the feed never starve other requests.

Thread safety: every method may be called from any thread; state is guarded by one lock.
`handle()` only copies a few fields and appends to queues, so the pipeline never waits on a browser.
Nothing here holds credentials: events are redacted where they are built, and source URLs are
never stored.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Optional, Sequence

from ..events import Event

log = logging.getLogger(__name__)

RING_SIZE = 200  # recent events kept per camera for the timeline
SUBSCRIBER_QUEUE = 256  # events a browser may fall behind before it loses the oldest


@dataclass
class CameraView:
    name: str
    state: str = "starting"  # online | reconnecting | offline | starting
    state_detail: str = ""
    gate: str = "describing"  # describing | skipping | paused
    caption: Optional[dict[str, Any]] = None  # the latest caption event's payload
    snapshot_id: Optional[str] = None  # the event id whose frame is the latest snapshot
    snapshot: Any = field(default=None, repr=False)  # RGB ndarray of that frame
    rules: dict[str, str] = field(default_factory=dict)  # rule -> ON | OFF
    last_alert: Optional[dict[str, Any]] = None
    recent: collections.deque = field(default_factory=lambda: collections.deque(maxlen=RING_SIZE))
    updated: float = 0.0


class TooManySubscribers(Exception):
    """The feed has its most subscribers (http.limits.max_event_subscribers)."""


class _Subscriber:
    """One browser on the feed: a bounded queue filled from any thread, read on the event loop.
    Waiting costs no thread (an asyncio.Event set through the loop), so idle browsers never hold
    the worker threads that other requests run on."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.items: collections.deque = collections.deque()
        self.ready = asyncio.Event()  # made on the loop's thread (subscribe runs there)
        self.dropped = 0
        self._lock = threading.Lock()

    def offer(self, item: Optional[dict[str, Any]]) -> None:
        with self._lock:
            if len(self.items) >= SUBSCRIBER_QUEUE:
                self.items.popleft()
                self.dropped += 1
            self.items.append(item)
        try:
            self.loop.call_soon_threadsafe(self.ready.set)
        except RuntimeError:  # the loop is closed: the server stopped, nobody reads this any more
            pass

    def take(self) -> list[Optional[dict[str, Any]]]:
        with self._lock:
            items, self.items = list(self.items), collections.deque()
            self.ready.clear()
        return items


class SiteHub:
    """What the web plug-in (plugin.py) keeps of every event, for the routes to read."""

    def __init__(self, sources: Sequence[str], rules: Sequence[str] = (), max_subscribers: int = 32):
        self._lock = threading.Lock()
        self.max_subscribers = max_subscribers
        self._cameras = {name: CameraView(name, rules={r: "OFF" for r in rules}) for name in sources}
        self._subscribers: list[_Subscriber] = []
        self._jpeg_cache: dict[str, tuple[str, bytes]] = {}  # source -> (event id, JPEG)
        self._closed = False

    # -- events ------------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        data = event.to_dict()
        with self._lock:
            camera = self._cameras.get(event.source) if event.source else None
            if camera is not None:
                self._apply(camera, event, data)
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.offer(data)

    def stop(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            self._closed = True
            subscribers, self._subscribers = self._subscribers, []
        for subscriber in subscribers:
            subscriber.offer(None)  # ends its stream

    # -- state ------------------------------------------------------------------------------

    def _apply(self, camera: CameraView, event: Event, data: dict[str, Any]) -> None:
        camera.updated = time.time()
        if event.type == "caption":
            camera.caption = data
            camera.gate = "describing"
            if event.snapshot is not None:
                camera.snapshot, camera.snapshot_id = event.snapshot, event.id
        elif event.type == "unchanged":
            camera.gate = "skipping"
        elif event.type == "alert":
            rule = data.get("rule")
            if rule:
                camera.rules[rule] = data.get("state") or ("ON" if data.get("transition") == "raised" else "OFF")
            camera.last_alert = data
        elif event.type == "status":
            camera.state, camera.state_detail = data.get("state", camera.state), data.get("detail", "")
            return  # status changes are on the camera card, not the timeline
        else:
            return
        camera.recent.append(data)

    def set_paused(self, source: str, paused: bool) -> None:
        with self._lock:
            camera = self._cameras.get(source)
            if camera is not None:
                camera.gate = "paused" if paused else "describing"

    def cameras(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._summary(c) for c in self._cameras.values()]

    @staticmethod
    def _summary(camera: CameraView) -> dict[str, Any]:
        caption = camera.caption or {}
        alert = camera.last_alert
        return {
            "name": camera.name,
            "state": camera.state,
            "detail": camera.state_detail,
            "gate": camera.gate,
            "caption": caption.get("text"),
            "caption_ts": caption.get("ts"),
            "caption_id": caption.get("id"),
            "snapshot": camera.snapshot_id is not None,
            "snapshot_id": camera.snapshot_id,
            "rules": dict(camera.rules),
            "last_alert": alert,
            "updated": camera.updated,
        }

    def timeline(self, source: str, limit: int = 100) -> Optional[list[dict[str, Any]]]:
        """Recent captions, unchanged spans and alerts of `source`, newest first; None if unknown."""
        with self._lock:
            camera = self._cameras.get(source)
            if camera is None:
                return None
            items = list(camera.recent)
        return items[::-1][: max(1, limit)]

    def snapshot_jpeg(self, source: str) -> Optional[bytes]:
        """The latest snapshot of `source` as JPEG, encoded once per caption (on first request)."""
        with self._lock:
            camera = self._cameras.get(source)
            if camera is None or camera.snapshot is None:
                return None
            key, image = camera.snapshot_id or "", camera.snapshot
            cached = self._jpeg_cache.get(source)
        if cached is not None and cached[0] == key:
            return cached[1]
        from ..media.jpeg import encode_jpeg  # PyAV, only when a page asks

        jpeg = encode_jpeg(image)
        with self._lock:
            self._jpeg_cache[source] = (key, jpeg)
        return jpeg

    # -- the feed ---------------------------------------------------------------------------

    def subscribe(self, heartbeat_s: float = 15.0) -> AsyncIterator[bytes]:
        """Server-sent events for one browser, to iterate on the running event loop: one `data:`
        line of JSON per event, and a comment every `heartbeat_s` so proxies keep the connection.
        TooManySubscribers when the feed is full."""
        subscriber = _Subscriber(asyncio.get_running_loop())
        with self._lock:
            if len(self._subscribers) >= self.max_subscribers:
                raise TooManySubscribers(f"the event feed has its {self.max_subscribers} subscribers")
            closed = self._closed
            if not closed:
                self._subscribers.append(subscriber)
        return self._stream(subscriber, heartbeat_s, closed)

    async def _stream(self, subscriber: _Subscriber, heartbeat_s: float, closed: bool) -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            while not closed:
                try:
                    await asyncio.wait_for(subscriber.ready.wait(), heartbeat_s)
                except asyncio.TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                for item in subscriber.take():
                    if item is None:
                        return
                    payload = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
                    yield f"event: {item.get('type', 'message')}\ndata: {payload}\n\n".encode("utf-8")
        finally:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)
