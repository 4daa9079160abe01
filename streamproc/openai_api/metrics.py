"""Prometheus metrics of the API, in a registry of their own (served at /metrics)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class ServeMetrics:
    def __init__(self, pool) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "streamproc_serve_requests", "API requests by route and status code", ["route", "status"], registry=r
        )
        self.rejected = Counter("streamproc_serve_rejected", "requests refused with 429 (queue full)", registry=r)
        self.request_seconds = Histogram(
            "streamproc_serve_request_seconds", "chat completion time, queue wait included", ["stream"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.first_token_seconds = Histogram(
            "streamproc_serve_first_token_seconds", "time to the first token, queue wait included",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.queue_seconds = Histogram(
            "streamproc_serve_queue_seconds", "time waiting for an engine", buckets=LATENCY_BUCKETS, registry=r
        )
        self.prompt_tokens = Counter("streamproc_serve_prompt_tokens", "prompt tokens (visual included)", registry=r)
        self.completion_tokens = Counter("streamproc_serve_completion_tokens", "generated tokens", registry=r)
        waiting = Gauge("streamproc_serve_queue_waiting", "requests waiting for an engine", registry=r)
        waiting.set_function(lambda: pool.waiting)
        busy = Gauge("streamproc_serve_engines_busy", "engines running a request", registry=r)
        busy.set_function(lambda: pool.busy)
        engines = Gauge("streamproc_serve_engines", "engines serving requests", registry=r)
        engines.set(len(pool.backends))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
