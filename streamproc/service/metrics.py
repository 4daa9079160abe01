"""/metrics and /healthz on the service's HTTP port (`http.py`).

The port answers from process start: the application starts it before the model loads, and
`/healthz` says `"state": "loading"` (503) until the workers run.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..metrics import Metrics
from .http import HttpServer, Request, Response

log = logging.getLogger(__name__)


class HealthServer:
    """The service's HTTP port (`service.http.HttpServer`) with /metrics (Prometheus text) and
    /healthz (JSON; 200 healthy, 503 not or still loading). Other features add routes through
    `route()`."""

    def __init__(self, metrics: Metrics, health: Callable[[], dict], host: str, port: int):
        try:
            self.http = HttpServer(host, port)
        except OSError as exc:  # port in use, no such address: one line, exit 2
            from ..errors import ConfigError

            raise ConfigError(
                f"service.metrics: cannot listen on {host}:{port}: {exc.strerror or exc} "
                "(another process has the port? set service.metrics.port, or 0 for any free one)"
            ) from None

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
