"""One HTTP stack for both ports (`streamproc run`'s and `streamproc serve`'s): Starlette routes
behind one middleware, on uvicorn in a thread.

    app.py      build_app(routes, HttpConfig) -> the ASGI app; PublicRoute for routes without a key
    guard.py    the middleware: Host check, body limit, API keys, cross-site refusals, security headers
    server.py   HttpServer(app, host, port, limits): uvicorn in a thread, header/keep-alive timeouts,
                a cap on connections; start(), stop(), port

Route builders live with their features (web/routes.py, store/api.py, attachments/plugin.py, health.py,
openai_api/app.py) and return lists of routes. See docs/security.md.
"""
from .app import PublicRoute, add_routes, build_app
from .server import HttpServer

__all__ = ["HttpServer", "PublicRoute", "add_routes", "build_app"]
