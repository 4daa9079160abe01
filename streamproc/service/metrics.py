"""Prometheus metrics and /healthz on one small HTTP server.

prometheus_client gives correct exposition and histogram buckets for free; the server is the
standard library's, so /healthz can sit beside /metrics. Each pipeline has its own registry
(tests run several pipelines in one process).
"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

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
    """Serves /metrics (Prometheus text) and /healthz (JSON; 200 healthy, 503 not)."""

    def __init__(self, metrics: Metrics, health: Callable[[], dict], host: str, port: int):
        metrics_ref, health_ref = metrics, health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?")[0] == "/metrics":
                    body, status, kind = metrics_ref.exposition(), 200, CONTENT_TYPE_LATEST
                elif self.path.split("?")[0] == "/healthz":
                    report = health_ref()
                    body = json.dumps(report).encode()
                    status, kind = (200 if report.get("healthy") else 503), "application/json"
                else:
                    body, status, kind = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes are not worth a log line each
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics, health on /healthz", *self._server.server_address[:2])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
