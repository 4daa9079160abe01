"""Prometheus metrics and /healthz on the service's HTTP port (`http.py`).

prometheus_client gives correct exposition and histogram buckets for free; the server is the
standard library's, so /healthz and other routes can sit beside /metrics. Each pipeline has its own registry
(tests run several pipelines in one process).
"""
from __future__ import annotations

import logging
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .http import HttpServer, Request, Response

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("streamproc_frames", "Frames sampled", ["source"], registry=r)
        self.segments = Counter("streamproc_segments", "Segments cut", ["source"], registry=r)
        self.described = Counter("streamproc_segments_described", "Segments the model described", ["source"], registry=r)
        self.dropped = Counter("streamproc_segments_dropped", "Segments dropped by a full queue", ["source"], registry=r)
        self.reconnects = Counter("streamproc_reconnects", "Live source reconnects", ["source"], registry=r)
        self.errors = Counter("streamproc_errors", "Errors by stage", ["stage"], registry=r)
        self.events = Counter("streamproc_events", "Events handed to the sinks", ["type"], registry=r)
        self.queue_depth = Gauge("streamproc_queue_depth", "Segments waiting", ["source"], registry=r)
        self.source_up = Gauge("streamproc_source_up", "1 while the source delivers frames", ["source"], registry=r)
        self.outbox_depth = Gauge("streamproc_outbox_depth", "Events waiting in the MQTT outbox", registry=r)
        self.tokens_per_s = Gauge("streamproc_tokens_per_second", "Decode speed of the last request", registry=r)
        self.generated = Counter("streamproc_generated_tokens", "Tokens generated", registry=r)
        self.request_seconds = Histogram(
            "streamproc_model_request_seconds", "Model time per segment (all turns)", registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.first_token_seconds = Histogram(
            "streamproc_model_first_token_seconds", "Time to the first caption token", registry=r,
            buckets=_LATENCY_BUCKETS,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """The service's HTTP port (`service.http.HttpServer`) with /metrics (Prometheus text) and
    /healthz (JSON; 200 healthy, 503 not). Other features add routes through `route()`."""

    def __init__(self, metrics: Metrics, health: Callable[[], dict], host: str, port: int):
        self.http = HttpServer(host, port)

        def metrics_route(request: Request) -> Response:
            return Response(200, CONTENT_TYPE_LATEST, metrics.exposition())

        def health_route(request: Request) -> Response:
            report = health()
            return Response.json(report, 200 if report.get("healthy") else 503)

        self.http.route("GET", "/metrics", metrics_route)
        self.http.route("GET", "/healthz", health_route)
        self.route = self.http.route

    @property
    def port(self) -> int:
        return self.http.port

    def start(self) -> None:
        self.http.start()
        log.info("metrics on http://%s:%d/metrics, health on /healthz", self.http.host, self.http.port)

    def stop(self) -> None:
        self.http.stop()
