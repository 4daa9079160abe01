"""Prometheus metrics of the running service: one registry per application.

prometheus_client gives correct exposition and histogram buckets for free. Each application has
its own registry (tests run several in one process). Names and meanings: docs/metrics.md.

Metrics that can alert: every labelled series exists at zero from the start (`prepare()`), for
each source, rule and error stage, so `increase(streamproc_segments_dropped_total[5m]) > 0` or
`streamproc_source_up == 0` can fire even for a source that never delivered a frame.
"""
from __future__ import annotations

import platform
from typing import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import generate_latest

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
ERROR_STAGES = ("source", "model", "model_restart", "sink", "attachment")
EVENT_TYPES = ("caption", "alert", "status", "stats", "service")
STATES = ("loading", "ready", "stopping")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("streamproc_frames", "Frames sampled", ["source"], registry=r)
        self.segments = Counter("streamproc_segments", "Segments cut", ["source"], registry=r)
        self.described = Counter("streamproc_segments_described", "Segments the model described", ["source"], registry=r)
        self.dropped = Counter("streamproc_segments_dropped", "Segments dropped by a full queue", ["source"], registry=r)
        self.coalesced = Counter(
            "streamproc_segments_coalesced", "Segments merged into a later model call (thinned, not dropped)", ["source"],
            registry=r,
        )
        self.gate = Counter(  # reason: off, always, first, gap, resync, heartbeat, change | unchanged
            "streamproc_gate_segments", "Segments by scene-change gate decision", ["source", "decision", "reason"], registry=r
        )
        self.paused_segments = Counter(
            "streamproc_segments_paused", "Segments skipped because the source was paused", ["source"], registry=r
        )
        self.reconnects = Counter("streamproc_reconnects", "Live source reconnects", ["source"], registry=r)
        self.corrupt = Counter(
            "streamproc_corrupt_packets", "Damaged packets or pictures the decoder met (their frames are not used)",
            ["source"], registry=r,
        )
        self.errors = Counter("streamproc_errors", "Errors by stage", ["stage"], registry=r)
        self.events = Counter("streamproc_events", "Events handed to the sinks", ["type"], registry=r)
        self.alerts = Counter(
            "streamproc_alerts", "Alert transitions", ["source", "rule", "transition"], registry=r
        )
        self.queue_depth = Gauge("streamproc_queue_depth", "Segments waiting", ["source"], registry=r)
        self.source_up = Gauge("streamproc_source_up", "1 while the source delivers frames", ["source"], registry=r)
        self.source_paused = Gauge("streamproc_source_paused", "1 while describing the source is paused", ["source"], registry=r)
        self.rule_enabled = Gauge("streamproc_rule_enabled", "1 while the rule is evaluated", ["rule"], registry=r)
        self.rule_on = Gauge("streamproc_rule_on", "1 while the rule's alert is raised", ["source", "rule"], registry=r)
        self.outbox_depth = Gauge("streamproc_outbox_depth", "Events waiting in the sinks' disk outboxes (MQTT, webhook)", registry=r)
        self.outbox_dropped = Gauge(
            "streamproc_outbox_dropped", "Events the MQTT outbox lost (oldest/newest: its bound; disk_full)",
            ["reason"], registry=r,
        )
        self.attachment_bytes = Gauge("streamproc_attachments_bytes", "Bytes of alert attachments kept on disk", registry=r)
        self.tokens_per_s = Gauge("streamproc_tokens_per_second", "Decode speed of the last request", registry=r)
        self.generated = Counter("streamproc_generated_tokens", "Tokens generated", registry=r)
        self.ready = Gauge("streamproc_ready", "1 once the model is loaded and the workers run", registry=r)
        self.state = Gauge("streamproc_state", "The service's state (1 for the current one)", ["state"], registry=r)
        self.request_seconds = Histogram(
            "streamproc_model_request_seconds", "Model time per segment (all turns)", registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.first_token_seconds = Histogram(
            "streamproc_model_first_token_seconds", "Time to the first caption token", registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.build = Info("streamproc_build", "Version of streamproc and its runtime", registry=r)
        self.build.info(_build_labels())
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        PlatformCollector(registry=r)  # python_info
        for stage in ERROR_STAGES:
            self.errors.labels(stage)
        for type_ in EVENT_TYPES:
            self.events.labels(type_)
        self.set_state("loading")

    def prepare(self, sources: Iterable[str], rules: Iterable[tuple[str, Iterable[str]]]) -> None:
        """Create every labelled series at zero: `sources` by name, `rules` as (rule, its sources)."""
        for source in sources:
            for family in (self.frames, self.segments, self.described, self.dropped, self.coalesced, self.paused_segments,
                           self.reconnects, self.corrupt):
                family.labels(source)
            for gauge in (self.queue_depth, self.source_up, self.source_paused):
                gauge.labels(source).set(0)
        for rule, rule_sources in rules:
            self.rule_enabled.labels(rule).set(1)
            for source in rule_sources:
                self.rule_on.labels(source, rule).set(0)
                for transition in ("raised", "cleared"):
                    self.alerts.labels(source, rule, transition)

    def set_state(self, state: str) -> None:
        self.state_name = state
        for name in STATES:
            self.state.labels(name).set(1 if name == state else 0)
        self.ready.set(1 if state == "ready" else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _build_labels() -> dict[str, str]:
    from . import __version__

    labels = {"version": __version__, "python": platform.python_version()}
    try:  # the versions that decide behaviour: decoding and the model runtime's bindings
        import av

        labels["pyav"] = str(av.__version__)
    except ImportError:  # pragma: no cover - PyAV is a core dependency
        pass
    return labels
