"""The event bus: everything after the model plugs in here, through one small interface.

A `Plugin` (in the manner of Frigate's Communicator) is started before the model loads, receives
every event through `handle`, may serve HTTP routes on the service port, reports its counters for
the stats event, and is flushed and stopped last. MQTT, the webhook, caption files, stdout, the
caption store, the web view, alert attachments and metrics are plug-ins; none of them is handed
the pipeline or the application: the composition root (`streamproc.app`) gives each what it
needs in its constructor.

Order: plug-ins of `Stage.ENRICH` see an event first, in the publishing thread, through
`enrich(event) -> event`, and may return it with fields added (attachments add their files to a
raised alert); then every `Stage.DELIVER` plug-in gets the result through `handle`. Only ENRICH
plug-ins see the event's segment (`Event.segment`, in-process frames); delivered events carry
none, so no plug-in can keep a segment's frames alive.

Source states are ordinary `status` events; a plug-in ignores the event types it does not need.

Thread safety: `publish` is called from model workers and intake threads at once; plug-ins'
`handle` must be thread-safe and quick (the MQTT plug-in appends to its disk outbox and returns).
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import time
from typing import Any, Callable, Iterable, Optional, Protocol, Sequence, runtime_checkable

from .events import Event

log = logging.getLogger(__name__)


class Stage(enum.Enum):
    ENRICH = 1  # first, in the publishing thread: `enrich(event)` may return it with fields added
    DELIVER = 2  # everything else: `handle(event)`


@runtime_checkable
class Plugin(Protocol):
    name: str
    stage: Stage

    def start(self) -> None:
        """Open files, connect, start threads. Once, before the first event (and before the model loads)."""

    def handle(self, event: Event) -> None:
        """Take one event. Thread-safe; never blocks the pipeline for long."""

    def enrich(self, event: Event) -> Event:
        """ENRICH stage only: the event, with fields added where this plug-in has something to add."""

    def routes(self) -> Sequence[Any]:
        """HTTP routes (Starlette routes) this plug-in serves on the service port; [] for none."""

    def stats(self) -> Optional[dict[str, Any]]:
        """Counters for the stats event; None when there is nothing to report."""

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything handed in so far is delivered; False if the time ran out."""

    def stop(self, timeout_s: float) -> None:
        """Flush (bounded by `timeout_s`) and release everything. Undelivered events stay in outboxes."""

    def events_lost(self) -> int:
        """Events this plug-in could not keep in this run (an outbox's bound, a full disk)."""


class BasePlugin:
    """Defaults for the optional parts of `Plugin`."""

    name = "plugin"
    stage = Stage.DELIVER

    def start(self) -> None:
        pass

    def handle(self, event: Event) -> None:
        pass

    def enrich(self, event: Event) -> Event:
        return event

    def routes(self) -> Sequence[Any]:
        return []

    def stats(self) -> Optional[dict[str, Any]]:
        return None

    def flush(self, timeout_s: float = 10.0) -> bool:
        return True

    def stop(self, timeout_s: float = 10.0) -> None:
        pass

    def events_lost(self) -> int:
        return 0


class Publisher(Protocol):
    """What the pipeline publishes into: the bus, or in cluster mode the fenced commit before it."""

    def publish(self, events: Sequence[Event], segment: Any = None) -> None: ...


ErrorHook = Callable[[str, Exception], None]  # (plug-in name, error): counted in metrics


class EventBus:
    """Plug-ins in their order of subscription (ENRICH ones first). `on_error` counts failures."""

    def __init__(self, plugins: Iterable[Plugin] = (), on_error: Optional[ErrorHook] = None):
        self._plugins: list[Plugin] = []
        self._started: list[Plugin] = []
        self.on_error = on_error
        for plugin in plugins:
            self.subscribe(plugin)

    @property
    def plugins(self) -> list[Plugin]:
        return list(self._plugins)

    def subscribe(self, plugin: Plugin) -> None:
        """Add a plug-in (before start). ENRICH plug-ins keep their place ahead of DELIVER ones."""
        self._plugins.append(plugin)
        self._plugins.sort(key=lambda p: p.stage.value)  # stable: subscription order within a stage

    def find(self, name: str) -> Optional[Plugin]:
        return next((p for p in self._plugins if p.name == name), None)

    def start(self) -> None:
        """Start every plug-in in order; only started ones are told anything afterwards."""
        for plugin in self._plugins:
            plugin.start()
            self._started.append(plugin)

    def publish(self, events: Sequence[Event], segment: Any = None) -> None:
        """Hand `events` (a segment's, in order) to every started plug-in. `segment` is shown to
        ENRICH plug-ins only. One plug-in's failure never stops the others."""
        for event in events:
            self._dispatch(dataclasses.replace(event, segment=segment) if segment is not None else event)

    def _dispatch(self, event: Event) -> None:
        started = self._started
        for plugin in started:
            if plugin.stage is Stage.ENRICH:
                try:
                    event = plugin.enrich(event)
                except Exception as error:  # the event goes out without what this plug-in adds
                    self._failed(plugin, event, error)
        if event.segment is not None:
            event = dataclasses.replace(event, segment=None)
        for plugin in started:
            if plugin.stage is Stage.DELIVER:
                try:
                    plugin.handle(event)
                except Exception as error:  # one plug-in's trouble must not stop the others
                    self._failed(plugin, event, error)

    def _failed(self, plugin: Plugin, event: Event, error: Exception) -> None:
        log.error("plug-in %s could not take event %s: %s", plugin.name, event.id, error)
        if self.on_error is not None:
            self.on_error(plugin.name, error)

    def routes(self) -> list[Any]:
        return [route for plugin in self._plugins for route in plugin.routes()]

    def events_lost(self) -> int:
        return sum(p.events_lost() for p in self._plugins)

    def stats(self) -> dict[str, Any]:
        report = {}
        for plugin in self._started:
            stats = plugin.stats()
            if stats is not None:
                report[plugin.name] = stats
        return report

    def flush(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        return all([p.flush(max(0.1, deadline - time.monotonic())) for p in self._started])

    def stop(self, timeout_s: float) -> bool:
        """Flush and stop every plug-in, last started first; True if everything was delivered."""
        deadline = time.monotonic() + timeout_s
        delivered = True
        for plugin in reversed(self._started):
            # one deadline for all: undelivered events stay in the outboxes, a late stop is a late exit
            remaining = max(0.05, deadline - time.monotonic())
            try:
                delivered = plugin.flush(remaining) and delivered
                plugin.stop(remaining)
            except Exception as error:
                delivered = False
                log.error("plug-in %s did not stop cleanly: %s", plugin.name, error)
        self._started = []
        return delivered
