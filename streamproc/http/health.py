"""/metrics and /healthz: the routes the service's port has from its first second (the model
loads after the port opens; /healthz says "loading", 503, until the workers run)."""
from __future__ import annotations

from typing import Any, Callable

from .app import PublicRoute


def health_routes(metrics: Any, health: Callable[[], dict]) -> list:
    """GET /metrics (Prometheus text; needs the key unless http.public_metrics) and GET /healthz
    (JSON; 200 healthy, 503 not or still loading; public, for probes). `metrics` has
    `exposition()` (streamproc.metrics.Metrics)."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def metrics_route(request) -> Response:
        return Response(metrics.exposition(), 200, media_type=CONTENT_TYPE_LATEST)

    def health_route(request) -> Response:
        report = health()
        return JSONResponse(report, 200 if report.get("healthy") else 503)

    return [Route("/metrics", metrics_route), PublicRoute("/healthz", health_route)]
