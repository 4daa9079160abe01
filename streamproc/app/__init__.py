"""The composition root: from a `Config`, build every part of the service, start them in order and
stop them in reverse (in the manner of Frigate's FrigateApp). Nothing else builds parts:
`streamproc run`, the cluster box and the benches call `App`.

Built in __init__ (nothing started): metrics, the run-time control switches, the rule engine, the
gate stage, the lanes, the event bus and its plug-ins (metrics, attachments, the sinks, the web
view, the caption store). Started by `start()`, in this order:

1. the HTTP port (health says "loading" until the model is ready, metrics answer at once);
2. the plug-ins: MQTT connects, announces availability and Home Assistant discovery, before
   any model loads;
3. the model: sizes from its files (a value that does not fit fails before weights load), then
   one backend per model worker;
4. the pipeline (the data path only: intake, gate stage, lanes, workers, describer, bus);
5. the stats ticker; the state becomes "ready".

`stop()` undoes them in reverse: the pipeline (segments in flight finish, calls still running
near the deadline are aborted), the plug-ins (flushed, MQTT publishes offline), the backends,
the HTTP port.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional, Sequence

from ..backends.base import create_backend
from ..bus import EventBus, Plugin, Publisher
from ..config import Config
from ..config.checks import require_a_sink
from ..control import PipelineControl
from ..errors import ConfigError
from ..events import service_event, stats_event, status_event
from ..gate import GateStage
from ..lanes import FairSegmentQueue, LanePolicy
from ..metrics import Metrics
from ..pipeline.describer import SegmentDescriber, describe_settings, unchanged_events
from ..pipeline.intake import IntakeParts
from ..pipeline.pipeline import DroppedSegments, Pipeline, PipelineSettings
from ..rules.alerts import RuleEngine
from . import models
from ..sinks import create_sinks
from ..urgency import Cuts
from .plugins import MetricsPlugin, attachments_plugin, store_plugin
from .wiring import wire_control

log = logging.getLogger(__name__)
_BUS_STOP_SHARE_S = 1.0  # of shutdown_timeout_s, kept for the plug-ins to flush (MQTT offline, outboxes)

BackendFactory = Callable[[], Any]
PublisherFor = Callable[[EventBus], Publisher]  # cluster mode: the fenced commit in front of the bus


class App:
    def __init__(
        self, config: Config, *, backend_factory: Optional[BackendFactory] = None,
        plugins: Optional[Sequence[Plugin]] = None, serve_http: Optional[bool] = None,
        publisher_for: Optional[PublisherFor] = None, start_sources: bool = True,
    ):
        if config.backend is None and backend_factory is None:
            raise ConfigError("the config has no backend section: say which model describes the segments")
        self.config = config
        self.sources = [s for s in config.sources if s.enabled]
        if not self.sources:
            raise ConfigError("no enabled sources in the config")
        if plugins is None:
            require_a_sink(config)
        names = [s.name for s in self.sources]
        # Cameras that may restart here or on another box use wall time in their ids, like a live one's.
        self.live_sources = frozenset(s.name for s in self.sources if s.live or publisher_for is not None)
        self.metrics = Metrics()
        self.rules = RuleEngine(config.rules, live_sources=self.live_sources)
        self.control = wire_control(PipelineControl(names, [r.name for r in config.rules]), self.metrics, self.rules, config.rules)
        self.gate = GateStage(config.gate, {s.name: s.gate for s in self.sources}, self._count_gate)
        if self.gate.enabled:
            for name in names:  # the series alerts are written against exist from the start
                self.metrics.gate.labels(name, "skipped", "unchanged")
                self.metrics.gate.labels(name, "described", "change")
        self.policy = config.service.policy.resolve()  # the urgency policy (streamproc/urgency.py)
        self.lanes = FairSegmentQueue(on_drop=DroppedSegments(self.metrics, self.gate.forget), order=self.policy.order,
                                      on_coalesce=lambda source, merged: self.metrics.coalesced.labels(source).inc(merged),
                                      busy_frames=self.policy.busy_frames)
        self.backend_factory = backend_factory or (lambda: create_backend(config.backend))
        self.serve_http = config.http.enabled if serve_http is None else serve_http
        self.bus = EventBus(self._plugins(plugins, names), on_error=lambda name, error: self.metrics.errors.labels("sink").inc())
        self.publisher: Publisher = publisher_for(self.bus) if publisher_for is not None else self.bus
        self.start_sources = start_sources
        self.pipeline: Optional[Pipeline] = None
        self.backends: list[Any] = []
        self.http: Any = None
        self.stopped = threading.Event()  # set by stop(); the stats ticker and a model load watch it
        self._started_at = time.time()
        self._ticker: Optional[threading.Thread] = None
        self._loading = threading.Event()  # a backend is being loaded (a native load cannot be interrupted)
        self.load_progress = {"loaded": 0, "of": models.worker_count(config)}

    def _plugins(self, given: Optional[Sequence[Plugin]], names: list[str]) -> list[Plugin]:
        config = self.config
        plugins: list[Plugin] = [MetricsPlugin(self.metrics)]
        attachments = attachments_plugin(config, self.metrics)
        if attachments is not None:
            plugins.append(attachments)
        if given is not None:
            plugins += list(given)
        else:
            plugins += create_sinks(config.sinks, config.rules, names, control=self.control)
        store = store_plugin(config, names, self.backend_factory, lambda event: self.bus.publish([event]))
        if config.web.enabled and self.serve_http:
            from ..web.plugin import WebPlugin

            store_path = config.store.path if store is not None else None
            plugins.append(WebPlugin(names, [r.name for r in config.rules], config.web, stats=self.stats,
                                     control=self.control, store_path=store_path,
                                     max_subscribers=config.http.limits.max_event_subscribers))
        if store is not None and given is None:
            plugins.append(store)  # last: stopped first, so its scheduled summaries end before the others
        return plugins

    def _count_gate(self, source: str, outcome: str, reason: str) -> None:
        self.metrics.gate.labels(source, outcome, reason).inc()

    # -- start --------------------------------------------------------------------------------

    def start(self) -> None:
        if self.serve_http:
            self._start_http()
        self.bus.start()
        self._announce("loading")  # MQTT and Home Assistant know this box from its first second
        config = models.fit_to_files(self.config, self.rules)
        self._loading.set()
        try:
            self.backends = models.load_backends(
                self.backend_factory, self.load_progress, self.stopped, lambda: self._announce("loading")
            )
        finally:
            self._loading.clear()
        if self.stopped.is_set():
            return
        sizer = models.size_segments(config, self.backends, self.rules)
        self.pipeline = self._pipeline(config, sizer)
        self.pipeline.start()
        self._ticker = threading.Thread(target=self._tick_stats, name="stats", daemon=True)
        self._ticker.start()
        self.metrics.set_state("ready")
        self._announce("ready")

    def _pipeline(self, config: Config, sizer: Any) -> Pipeline:
        settings = describe_settings(config, self.live_sources)

        def describer(backend: Any) -> SegmentDescriber:
            return SegmentDescriber(backend, settings, self.rules, onset_elsewhere=self.lanes.onset_waiting)

        def remake() -> SegmentDescriber:  # a backend that keeps failing is made anew
            return describer(self.backend_factory())

        parts = IntakeParts(
            sampling=config.sampling, make_segmenter=sizer.segmenter, gate=self.gate, lanes=self.lanes,
            publisher=self.publisher, skipped_events=unchanged_events(self.rules, self.live_sources), metrics=self.metrics,
            cuts=Cuts.of(self.policy, config.sampling.fps),
        )
        service = config.service
        live_policy = LanePolicy.COALESCE if self.policy.coalesce else LanePolicy(service.live_drop_policy)
        return Pipeline(
            self.sources, parts, [describer(b) for b in self.backends], remake,
            self.control.is_paused,
            PipelineSettings(service.queue_size, live_policy, service.stuck_after_s, self.start_sources),
        )

    def _announce(self, state: str) -> None:
        """The service's state (loading, with the backends loaded so far; ready; stopping) on the bus."""
        progress = self.load_progress
        self.bus.publish([service_event(state, progress["loaded"], progress["of"])])

    def _start_http(self) -> None:
        """The port, with every plug-in's routes, open before the model loads."""
        from ..http import HttpServer, build_app
        from ..http.health import health_routes

        cfg = self.config.http
        app = build_app([*health_routes(self.metrics, self.health), *self.bus.routes()], cfg)
        try:
            self.http = HttpServer(app, cfg.host, cfg.port, cfg.limits)
        except OSError as exc:  # port in use, no such address: one line, exit 2
            raise ConfigError(
                f"http: cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc} "
                "(another process has the port? set http.port, or 0 for any free one)"
            ) from None
        self.http.start()
        keys = "every route but /healthz needs the API key" if cfg.keys() else "no API key"
        log.info("metrics on %s/metrics, health on /healthz (%s)", self.http.url, keys)
        if self.bus.find("web") is not None:
            log.info("web view on %s/%s", self.http.url, " (control enabled)" if self.config.web.control else "")

    def _tick_stats(self) -> None:
        while not self.stopped.wait(self.config.service.stats_interval_s):
            self.bus.publish([stats_event(self.stats())])

    # -- state --------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        pipeline = self.pipeline.stats() if self.pipeline is not None else {"described": 0, "failed": 0, "sources": {}}
        plugins = self.bus.stats()
        outbox = sum(int(((s.get("outbox") or {}).get("pending") or 0)) for s in plugins.values())
        self.metrics.outbox_depth.set(outbox)
        for reason in ("oldest", "newest", "disk_full"):  # lost events, counted (the exit code says so too)
            lost = sum(int(((s.get("outbox") or {}).get("dropped") or {}).get(reason, 0)) for s in plugins.values())
            self.metrics.outbox_dropped.labels(reason).set(lost)
        return {"uptime_s": round(time.time() - self._started_at, 1), **pipeline, "sinks": plugins}

    def loading(self) -> bool:
        """A model backend is loading now (a stop cannot wait for it)."""
        return self._loading.is_set()

    def health(self) -> dict[str, Any]:
        pipeline = self.pipeline
        busy = pipeline.busy_seconds() if pipeline is not None else []
        alive = pipeline.workers_alive() if pipeline is not None else 0
        stuck = [b for b in busy if b is not None and b > self.config.service.stuck_after_s]
        state = self.metrics.state_name
        return {
            "healthy": alive > 0 and not stuck and state == "ready",
            "state": state,  # loading (model not ready yet) | ready | stopping
            "workers": {"alive": alive, "busy_s": busy},
            "sources": {r.name: r.state.value for r in pipeline.runners} if pipeline is not None else {},
            "described": pipeline.stats()["described"] if pipeline is not None else 0,
            "model": dict(self.load_progress),  # backends loaded of those the workers need
        }

    def start_source(self, name: str) -> None:
        """Cluster mode: this box now owns camera `name`."""
        if self.pipeline is not None:
            self.pipeline.start_source(name)

    def stop_source(self, name: str) -> None:
        """Cluster mode: camera `name` moves to another box."""
        if self.pipeline is not None:
            self.pipeline.stop_source(name)

    def finished(self) -> bool:
        return self.pipeline is not None and self.pipeline.finished()

    def workers_alive(self) -> int:
        return self.pipeline.workers_alive() if self.pipeline is not None else 0

    def workers_gave_up(self) -> bool:
        return self.pipeline is not None and self.pipeline.workers_gave_up()

    def sources_failed(self) -> bool:
        return self.pipeline is not None and self.pipeline.sources_failed()

    def events_lost(self) -> int:
        """Events this run could not keep (an outbox's bound, a full disk); counted in stats."""
        return self.bus.events_lost()

    # -- stop ---------------------------------------------------------------------------------

    def stop(self, timeout_s: Optional[float] = None) -> bool:
        """Stop everything in reverse order; True if every event was delivered in time."""
        timeout_s = self.config.service.shutdown_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        self.metrics.set_state("stopping")
        self._announce("stopping")
        self.stopped.set()
        if self.pipeline is not None:
            # the plug-ins' flush gets a share of the one budget: shutdown_timeout_s bounds the whole stop
            self.pipeline.stop(max(0.0, timeout_s - min(_BUS_STOP_SHARE_S, timeout_s / 4)))
            # the run's final counters: a run shorter than stats_interval_s would otherwise publish none
            self.bus.publish([stats_event(self.stats())])
        self.bus.publish([status_event(s.name, "offline", "service stopped") for s in self.sources])
        delivered = self.bus.stop(max(0.1, deadline - time.monotonic()))
        self._close_backends()
        if self.http is not None:
            self.http.stop(max(0.2, deadline - time.monotonic()))
        return delivered

    def _close_backends(self) -> None:
        pipeline = self.pipeline
        current = pipeline.backends() if pipeline is not None else list(self.backends)
        for index, backend in enumerate(current):
            if pipeline is not None and pipeline.workers[index].thread.is_alive():
                log.error("model worker %d did not stop; its backend is left open", index)
                continue
            try:
                backend.close()
            except Exception as error:
                log.error("closing model backend %d failed: %s", index, error)
