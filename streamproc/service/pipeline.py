"""The running service: sources -> segmenters -> bounded fair queue -> model workers -> rules -> sinks.

Threads: one intake thread per source (PyAV and the native engine release the GIL), one worker
per backend instance (the TPU backend: one engine per worker over one loaded bmodel, whose
weights libbmrt shares; workers take segments round robin across sources, so no stream
starves), a stats thread, and the metrics HTTP server. Sinks never block: the MQTT sink stores
each event in its disk outbox and a publisher thread sends it.

Model inputs are built by the worker right before its backend runs, so a segment dropped from
a full queue costs nothing but its frames.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional, Sequence

from ..backends.base import Backend, create_backend
from ..config import Config
from ..errors import Aborted, ConfigError, ModelError, StreamprocError
from ..ingest.segmenter import DEFAULT_SEQ_LENGTH, Segmenter, SegmentPlan, plan_segments
from ..ingest.sources import SourceStatus
from ..rules.alerts import RuleEngine
from ..sinks.base import Sink, create_sinks
from ..events import Event, stats_event, status_event
from .describer import SegmentDescriber
from .intake import SINK_STATE, SourceRunner
from ..attachments import store_for
from .control import control_for, count_alert
from .metrics import HealthServer, Metrics
from .planning import effective_seq_length, prompt_reserve
from .queues import FairSegmentQueue
from ..gate.hooks import GateHooks
from ..supervise import Backoff, RestartBudget, StuckWatchdog, Supervisor

log = logging.getLogger(__name__)

BackendFactory = Callable[[], Backend]

_RETRIES = 1  # a segment whose request failed with a retryable error is tried once more
_RESTART_AFTER = 3  # backend failures in a row before the worker makes its backend anew
_RESTARTS_PER_WINDOW, _RESTART_WINDOW_S = 5, 600.0  # backend restarts a worker may make per window
_ABORT_GRACE_S = 2.0  # on stop: calls still running this long before the deadline are aborted
_ABORT_LATE_S = 0.5  # and may take until this long after it to return (an engine step must end)


def require_a_sink(config: Config) -> None:
    """Events that go nowhere are a mistake: refuse a config that enables no sink."""
    sinks = config.sinks
    store = getattr(config, "store", None)
    if (
        sinks.stdout.enabled
        or sinks.files.dir is not None
        or (sinks.mqtt is not None and sinks.mqtt.enabled)
        or (sinks.webhook is not None and sinks.webhook.enabled)
        or (store is not None and store.enabled)
    ):
        return
    raise ConfigError(
        "the config enables no sink, so events would go nowhere: add one of sinks.mqtt (host: ...), "
        "sinks.files (dir: ...), sinks.stdout (enabled: true) or store (enabled: true)"
    )


class Pipeline:
    def __init__(
        self,
        config: Config,
        *,
        backend_factory: Optional[BackendFactory] = None,
        sinks: Optional[Sequence[Sink]] = None,
        serve_metrics: Optional[bool] = None,
        owner=None,
    ):
        # `owner` (cluster mode, streamproc/cluster/box.py) decides which sources run here: it
        # calls start_source/stop_source, and its commit(segment, events) returns the events of
        # a described segment that may go out (none once another box owns the source).
        if config.backend is None and backend_factory is None:
            raise ConfigError("the config has no backend section: say which model describes the segments")
        self.config = config
        self.sources = [s for s in config.sources if s.enabled]
        if not self.sources:
            raise ConfigError("no enabled sources in the config")
        self._backend_factory = backend_factory or (lambda: create_backend(config.backend))
        self._sinks = list(sinks) if sinks is not None else None
        if sinks is None:
            require_a_sink(config)
        self._serve_metrics = config.service.metrics.enabled if serve_metrics is None else serve_metrics
        self.metrics = Metrics()
        self.queue = FairSegmentQueue(on_drop=self._dropped)
        self.intake_stop = threading.Event()  # stop reading sources
        self.work_stop = threading.Event()  # stop taking segments
        self.owner = owner
        # With an owner a source may be restarted on another box: ids use wall time, like a camera's.
        live = frozenset(s.name for s in self.sources if s.live or owner is not None)
        self.rules = RuleEngine(config.rules, live_sources=live)
        # the scene-change gate; intake puts into gate.lanes (the queue itself when the gate is off)
        self.gate = GateHooks(config, self.sources, self.queue, self.metrics, self.rules, live, self._deliver_skipped)
        self.live_sources = live
        self.backends: list[Backend] = []
        self.sinks: list[Sink] = []
        self.runners: list[SourceRunner] = []
        self._workers: list[threading.Thread] = []
        self._busy: list[Optional[float]] = []  # per worker: monotonic start of its current segment
        self._described = 0
        self._failed = 0
        self._gave_up = 0  # workers that gave up
        self._started_at = time.time()
        self._sink_lock = threading.Lock()
        self._stats_thread: Optional[threading.Thread] = None
        self.health_server: Optional[HealthServer] = None
        self.seq_length = DEFAULT_SEQ_LENGTH
        # run-time switches (pause a source, enable a rule), every metric series at zero, and the
        # files attached to raised alerts (service/control.py, attachments/)
        self.control = control_for(self)
        self.attachments = store_for(config, self.sources)

    # -- start ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._serve_metrics:  # the port answers from the start: /healthz says "loading" until ready
            cfg = self.config.service.metrics
            self.health_server = HealthServer(self.metrics, self.health, cfg.host, cfg.port)
            self.health_server.start()
        self._fit_to_model()  # sizes from the model's files; a value that does not fit fails before weights load
        count = self._worker_count()
        log.info("loading %d model backend%s", count, "s" if count > 1 else "")
        self.backends = [self._backend_factory() for _ in range(count)]
        builder = self.backends[0].inputs
        from ..qwen.budget import check_sampling

        check_sampling(builder.vision, self.config.sampling)
        self._size_segments(builder, getattr(self.backends[0], "seq_length", None))

        sinks = self._sinks if self._sinks is not None else create_sinks(
            self.config.sinks, self.config.rules, [s.name for s in self.sources], store=self.config.store
        )
        self.sinks = []
        for sink in sinks:  # only started sinks are told anything (statuses on stop included)
            if hasattr(sink, "bind_control"):  # MQTT: Home Assistant's switches
                sink.bind_control(self.control)
            sink.start()
            self.sinks.append(sink)
        from ..web.service import add_web_hub, mount_web  # the web view: a sink, then routes

        web_hub = add_web_hub(self)
        for source in self.sources:
            policy = self.config.service.live_drop_policy if source.live else "block"
            self.queue.add_source(source.name, self.config.service.queue_size, policy)
        for index, backend in enumerate(self.backends):
            describer = SegmentDescriber(backend, self.config, self.rules, self.live_sources)
            self._busy.append(None)
            thread = threading.Thread(target=self._work, args=(index, describer), name=f"model-{index}", daemon=True)
            self._workers.append(thread)
            thread.start()
        for source in self.sources if self.owner is None else ():  # an owner starts its own
            self.start_source(source.name, self.intake_stop)
        self._stats_thread = threading.Thread(target=self._stats_loop, name="stats", daemon=True)
        self._stats_thread.start()
        self._watchdog = StuckWatchdog(lambda: list(self._busy), self._abort_stuck, self.config.service.stuck_after_s, self.work_stop)
        self._watchdog.start()
        from ..store.service import start_store_feature  # the caption store's HTTP API and summaries

        self.store_feature = start_store_feature(self)
        mount_web(self, web_hub)
        if self.attachments is not None:
            self.attachments.start()
            if self.health_server is not None:
                self.health_server.serve_attachments(self.attachments)
        self.metrics.set_state("ready")

    def _fit_to_model(self) -> None:
        if self.config.backend is None:
            return
        from ..backends.geometry import fit_to_model, input_builder

        self.config, geometry = fit_to_model(self.config)
        builder = input_builder(self.config.backend)
        if geometry is not None and builder is not None:
            self._size_segments(builder, geometry.seq_length)

    def _size_segments(self, builder, model_seq_length) -> None:
        self.seq_length = effective_seq_length(model_seq_length, self.config)
        self._reserves = {s.name: prompt_reserve(self.config, builder, self.rules, s.name) for s in self.sources}
        for source in self.sources:  # a prompt that leaves no room fails now, not at the first segment
            self._plan(source.name, self.config.sampling.token_pixels, self.config.sampling.token_pixels)

    def _worker_count(self) -> int:
        backend = self.config.backend
        if backend is not None and backend.type == "tpu":
            return backend.engines
        return self.config.service.workers

    def _plan(self, source: str, height: int, width: int) -> SegmentPlan:
        seg = self.config.segmenting
        return plan_segments(
            self.seq_length, height, width, self.config.sampling.fps, self._reserves[source], seg.answer_reserve,
            seg.overlap_s, seg.max_duration_s, self.config.sampling.token_pixels, seg.pair_text_tokens,
        )

    def _segmenter(self, source: str) -> Segmenter:
        return Segmenter(source, self.config.sampling.fps, lambda h, w: self._plan(source, h, w))

    # -- work -------------------------------------------------------------------------------

    def _work(self, index: int, describer: SegmentDescriber) -> None:
        # Back-off with jitter between failed requests; at most _RESTARTS_PER_WINDOW backend
        # restarts per window, past which the worker gives up (the run exits 5 when none is left).
        supervisor = Supervisor(
            f"model-{index}", backoff=Backoff(1.0, 60.0, 2.0),
            budget=RestartBudget(_RESTARTS_PER_WINDOW, _RESTART_WINDOW_S),
        )
        failures = 0  # backend failures in a row, across segments
        while not self.work_stop.is_set():
            segment = self.queue.get(timeout=0.5)
            if segment is None:
                continue
            if self.control.is_paused(segment.source):  # switched off at run time: not described
                self.metrics.paused_segments.labels(segment.source).inc()
                self._ack(segment)
                continue
            if self.gate.is_skipped(segment):  # unchanged: no model, its events in the source's order
                try:
                    self._deliver_skipped(segment)
                finally:
                    self._ack(segment)
                continue
            self.metrics.queue_depth.labels(segment.source).set(self.queue.depth(segment.source))
            self._busy[index] = time.monotonic()
            described = None
            try:
                for attempt in range(1 + _RETRIES):
                    try:
                        described = describer.describe(segment)
                        break
                    except Aborted as error:  # stop, or stuck past stuck_after_s (the watchdog said so)
                        if not self.work_stop.is_set():
                            self.metrics.errors.labels("model").inc()
                            log.error("%s segment %d: %s", segment.source, segment.index, error)
                        else:
                            log.info("%s segment %d: not described (stopping): %s", segment.source, segment.index, error)
                        break
                    except Exception as error:  # typed or a bug: one request must not stop the worker
                        self.metrics.errors.labels("model").inc()
                        retry = isinstance(error, StreamprocError) and error.retryable and attempt < _RETRIES
                        self._log_failure(segment, error, retry)
                        if isinstance(error, ModelError):  # this segment's input, not the backend
                            break
                        failures += 1
                        if failures % _RESTART_AFTER == 0:
                            if supervisor.budget is not None and not supervisor.budget.take():
                                log.error(
                                    "model worker %d: its backend failed %d times in a row, restarted %d times "
                                    "within %.0f s; the worker gives up", index, failures, supervisor.budget.used(),
                                    _RESTART_WINDOW_S,
                                )
                                self._gave_up += 1
                                return
                            describer = self._restart_backend(index, describer, failures)
                        delay = 1.0 if retry else supervisor.backoff.next()
                        if self.work_stop.wait(delay) or not retry:
                            break
            finally:
                self._busy[index] = None
                if described is None:  # nothing to emit
                    self._ack(segment)
            if described is None:
                self._failed += 1
                self.gate.forget(segment.source)  # its reference frames were never described
                continue
            failures = 0
            supervisor.succeeded()
            self._described += 1
            result = described.result
            self.metrics.described.labels(segment.source).inc()
            self.metrics.request_seconds.observe(described.seconds)
            self.metrics.first_token_seconds.observe(result.timings.first_token_s)
            self.metrics.generated.inc(result.generated_tokens)
            if result.tokens_per_s:
                self.metrics.tokens_per_s.set(result.tokens_per_s)
            try:
                events = described.events if self.owner is None else self.owner.commit(segment, described.events)
                if self.attachments is not None:  # a raised alert's snapshot and clip exist before it goes out
                    events = self.attachments.attach_all(events, segment, self.metrics)
                for event in events:
                    self.emit(event)
            finally:  # only now may the source's next segment go: its events stay in segment order
                self._ack(segment)

    @staticmethod
    def _log_failure(segment, error: Exception, retry: bool) -> None:
        what = f"{segment.source} segment {segment.index}"
        if isinstance(error, StreamprocError):
            log.error("%s: %s%s", what, error, "; trying again" if retry else "")
        else:
            log.exception("%s: the model stage failed", what, exc_info=error)

    def _abort_stuck(self, index: int, running_s: float) -> None:
        log.error(
            "model worker %d: a call has run %.0f s (service.stuck_after_s is %.0f); aborting it",
            index, running_s, self.config.service.stuck_after_s,
        )
        self.metrics.errors.labels("model").inc()
        self._abort(index)

    def _abort(self, index: int) -> None:
        try:
            self.backends[index].abort()
        except Exception as error:  # a plug-in without a working abort(): the call runs on
            log.error("model worker %d: the backend cannot abort its call: %s", index, error)

    def workers_alive(self) -> int:
        return sum(t.is_alive() for t in self._workers)

    def workers_gave_up(self) -> bool:
        """Every model worker gave up (its backend kept failing past the restart budget)."""
        return bool(self._workers) and self._gave_up >= len(self._workers)

    def sources_failed(self) -> bool:
        """Every source ended with an error (none could be read, or every live one gave up)."""
        return bool(self.runners) and all(r.failed for r in self.runners)

    def events_lost(self) -> int:
        """Events this run could not keep (the outbox's bound, a full disk); counted in stats."""
        from ..sinks.mqtt import MqttSink

        return sum(sink.outbox.lost_since_open() for sink in self.sinks if isinstance(sink, MqttSink) and sink.outbox is not None)

    def _restart_backend(self, index: int, describer: SegmentDescriber, failures: int) -> SegmentDescriber:
        """A backend that keeps failing is closed and made anew (the stage restarts)."""
        log.warning("model worker %d: %d failures in a row; restarting its backend", index, failures)
        self.metrics.errors.labels("model_restart").inc()
        try:
            describer.backend.close()
        except Exception as error:
            log.error("model worker %d: closing the backend failed: %s", index, error)
        try:
            backend = self._backend_factory()
        except Exception as error:  # the next attempt fails fast and tries again later
            log.error("model worker %d: the backend did not come back: %s", index, error)
            return describer
        self.backends[index] = backend
        return SegmentDescriber(backend, self.config, self.rules, self.live_sources)

    def start_source(self, name: str, stop: Optional[threading.Event] = None) -> None:
        """Start reading source `name` (at start, or later when cluster mode hands it to this box)."""
        source = next(s for s in self.sources if s.name == name)
        previous = next((r for r in self.runners if r.name == name), None)
        if previous is not None:  # stopped before: its thread must be gone before a new one puts
            previous.stop.set()
            previous.join()
        runner = SourceRunner(
            source, self.config.sampling, self._segmenter, self.gate.lanes, self.metrics, self._source_status,
            stop or threading.Event(),
        )
        self.runners = [r for r in self.runners if r.name != name] + [runner]  # a new list: readers iterate the old
        runner.start()

    def stop_source(self, name: str, timeout_s: float = 5.0) -> None:
        """Stop reading source `name` (cluster mode: another box takes it). Its segments still
        waiting are left to the owner's commit, which drops them."""
        for runner in self.runners:
            if runner.name == name:
                runner.stop.set()
                runner.join(timeout_s)

    def _deliver_skipped(self, segment) -> None:
        """The events of a segment the gate skipped: "unchanged", then the rules' repeated verdicts.
        From the worker that took it, or from the intake thread when its source had nothing else
        waiting or in flight (then nothing of the source can come out before it)."""
        events = self.gate.skipped(segment)
        if self.attachments is not None:  # an alert raised by a repeated verdict has files too
            events = self.attachments.attach_all(events, segment, self.metrics)
        for event in events if self.owner is None else self.owner.commit(segment, events):
            self.emit(event)

    def _ack(self, segment) -> None:
        self.queue.ack(segment)  # after the segment's events: the source's next segment may go
        self.gate.finished(segment)

    def emit(self, event: Event) -> None:
        self.metrics.events.labels(event.type).inc()
        if event.type == "alert":
            count_alert(self.metrics, event)
        for sink in self.sinks:
            try:
                sink.handle(event)
            except Exception as error:  # one sink's trouble must not stop the others
                self.metrics.errors.labels("sink").inc()
                log.error("sink %s could not take event %s: %s", sink.name, event.id, error)

    def _dropped(self, segment) -> None:
        self.metrics.dropped.labels(segment.source).inc()
        self.gate.finished(segment)
        if not self.gate.is_skipped(segment):  # the gate's reference frames were never described
            self.gate.forget(segment.source)
        log.warning(
            "%s: the model cannot keep up; dropped segment %d (%.0f-%.0f s)",
            segment.source, segment.index, segment.start, segment.end,
        )

    def _source_status(self, status: SourceStatus) -> None:
        state = SINK_STATE.get(status.state)
        if state is None:
            return
        for sink in self.sinks:
            try:
                sink.source_status(status.source, state, status.detail)
            except Exception as error:
                self.metrics.errors.labels("sink").inc()
                log.error("sink %s could not take a status of %s: %s", sink.name, status.source, error)

    def _stats_loop(self) -> None:
        while not self.work_stop.wait(self.config.service.stats_interval_s):
            self.emit(stats_event(self.stats()))

    # -- state ------------------------------------------------------------------------------

    def stats(self) -> dict:
        sources = {}
        for runner in self.runners:
            counters = runner.source.counters if runner.source else None
            sources[runner.name] = {
                "state": runner.state,
                "frames": counters.sampled if counters else 0,
                "reconnects": counters.reconnects if counters else 0,
                "queued": self.queue.depth(runner.name),
                "dropped": self.queue.dropped(runner.name),
                "error": runner.error,
                **self.gate.stats(runner.name),
            }
        sinks = {sink.name: sink.stats() for sink in self.sinks if hasattr(sink, "stats")}
        outbox = sum(int(((s.get("outbox") or {}).get("pending") or 0)) for s in sinks.values())
        self.metrics.outbox_depth.set(outbox)
        for reason in ("oldest", "newest", "disk_full"):  # lost events, counted (the exit code says so too)
            lost = sum(int(((s.get("outbox") or {}).get("dropped") or {}).get(reason, 0)) for s in sinks.values())
            self.metrics.outbox_dropped.labels(reason).set(lost)
        return {
            "uptime_s": round(time.time() - self._started_at, 1),
            "described": self._described,
            "failed": self._failed,
            "sources": sources,
            "sinks": sinks,
        }

    def health(self) -> dict:
        now = time.monotonic()
        stuck_after = self.config.service.stuck_after_s
        busy = [None if started is None else round(now - started, 1) for started in self._busy]
        workers_alive = sum(t.is_alive() for t in self._workers)
        stuck = [b for b in busy if b is not None and b > stuck_after]
        healthy = workers_alive > 0 and not stuck and self.metrics.state_name == "ready"
        return {
            "healthy": healthy,
            "state": self.metrics.state_name,  # loading (model not ready yet) | ready | stopping
            "workers": {"alive": workers_alive, "busy_s": busy},
            "sources": {r.name: r.state for r in self.runners},
            "described": self._described,
        }

    def finished(self) -> bool:
        """Every source ended (files read to the end) and every segment described."""
        return (
            all(r.done.is_set() for r in self.runners)
            and self.queue.drained()
            and all(b is None for b in self._busy)
        )

    # -- stop -------------------------------------------------------------------------------

    def stop(self, timeout_s: Optional[float] = None) -> bool:
        """Stop intake, let the segments in flight finish, flush the sinks (MQTT publishes
        offline). True if everything was delivered in time."""
        timeout_s = self.config.service.shutdown_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        self.metrics.set_state("stopping")
        self.intake_stop.set()
        for runner in self.runners:  # sources started by an owner have their own stop flag
            runner.stop.set()
        waiting = self.queue.discard_waiting()
        if waiting:
            log.info("stopping: %d queued segment(s) not described", waiting)
        self.work_stop.set()
        # The segments in flight may finish until shortly before the deadline; calls still running
        # then are aborted, and a backend is closed only once its worker has left it (closing a
        # native engine under a running call crashes the process).
        reserve = min(_ABORT_GRACE_S, timeout_s / 2)
        for worker in self._workers:
            worker.join(max(0.0, deadline - reserve - time.monotonic()))
        running = [i for i, worker in enumerate(self._workers) if worker.is_alive()]
        for index in running:
            log.warning("stopping: aborting the model call of worker %d", index)
            self._abort(index)
        for index in running:
            self._workers[index].join(max(0.0, deadline + _ABORT_LATE_S - time.monotonic()))
        self.queue.shutdown()
        for runner in self.runners:
            runner.join(max(0.1, deadline - time.monotonic()))
        for source in self.sources:
            self._source_status(SourceStatus(source.name, "stopped", "service stopped"))
        if getattr(self, "store_feature", None) is not None:
            self.store_feature.stop()  # scheduled summaries end before the sinks close
        delivered = True
        for sink in self.sinks:
            remaining = max(0.5, deadline - time.monotonic())
            try:
                delivered = sink.flush(remaining) and delivered
                sink.close(remaining)
            except Exception as error:
                delivered = False
                log.error("sink %s did not close cleanly: %s", sink.name, error)
        for index, backend in enumerate(self.backends):
            if index < len(self._workers) and self._workers[index].is_alive():
                log.error("model worker %d did not stop; its backend is left open", index)
                continue
            try:
                backend.close()
            except Exception as error:
                log.error("closing model backend %d failed: %s", index, error)
        if self.health_server is not None:
            self.health_server.stop()
        return delivered
