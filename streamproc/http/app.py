"""The ASGI application both ports run: the routes given, behind the one middleware (guard.py).

    app = build_app([*health_routes(...), *web_routes(hub, ...)], config.http)
    server = HttpServer(app, config.http.host, config.http.port, config.http.limits)

Routes are plain Starlette routes made by each feature's route builder. A route that needs no
key (health, the page's static shell, which holds no data) is a `PublicRoute`; /metrics is public
only when `http.public_metrics` says so. Everything else needs a key whenever keys are set.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Match, Route

from ..config.http import HttpConfig
from ..redact import register_secret
from .guard import Guard, HostCheck, Policy


class PublicRoute(Route):
    """A route that answers without a key (declared by its builder, never guessed)."""


def build_app(routes: Sequence[BaseRoute], config: HttpConfig, *, max_body_bytes: Optional[int] = None) -> Starlette:
    """The routes behind the guard for `config` (keys, allowed hosts, limits). `max_body_bytes`
    overrides `config.limits.max_body_kb` (serve's --max-body-mb)."""
    keys = config.keys()
    for key in keys:
        register_secret(key)  # never in a log line, an event or an error
    public_paths = frozenset({"/metrics"} if config.public_metrics else ())
    app: Starlette

    def is_public(scope: dict) -> bool:
        if scope["path"] in public_paths:
            return True
        return any(isinstance(r, PublicRoute) and r.matches(scope)[0] is Match.FULL for r in app.router.routes)

    policy = Policy(
        keys=tuple(k.encode("latin-1", "replace") for k in keys),
        hosts=HostCheck(config.host, config.allowed_hosts),
        max_body=max_body_bytes or config.limits.max_body_kb * 1024,
        body_timeout_s=config.limits.body_timeout_s,
        max_head=config.limits.max_header_kb * 1024,
        is_public=is_public,
    )
    app = Starlette(routes=list(routes), middleware=[Middleware(Guard, policy=policy)])
    return app


def add_routes(app: Starlette, routes: Iterable[BaseRoute]) -> None:
    """Routes added to a running app (features that start after the port opens: the port answers
    /healthz while the model loads). Requests see them from the next one on."""
    app.router.routes.extend(routes)
