"""The service's one HTTP port: a small router over the standard library's threading server.

Features plug in by registering routes (`/metrics` and `/healthz` from `metrics.py`; other
modules add their own read APIs or pages), so no feature owns the request handler. A handler
takes a `Request` and returns a `Response`; a body that is an iterator of bytes is streamed
(server-sent events), each chunk flushed as it comes.

Thread safety: requests run on their own threads (ThreadingHTTPServer); handlers must be safe to
call concurrently. Routes may be added before or after `start()`.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Optional, Union
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    def arg(self, name: str, default: Optional[str] = None) -> Optional[str]:
        values = self.query.get(name)
        return values[-1] if values else default


@dataclass
class Response:
    status: int = 200
    content_type: str = "application/json"
    body: Union[bytes, Iterable[bytes]] = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: Optional[dict[str, str]] = None) -> "Response":
        body = json.dumps(data, ensure_ascii=False).encode("utf-8")
        return cls(status, "application/json", body, dict(headers or {}))

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> "Response":
        return cls(status, content_type, text.encode("utf-8"))


Handler = Callable[[Request], Response]


class Router:
    """Routes by method and exact path, or by path prefix (`prefix=True`, longest wins). Used by
    `HttpServer`, and by other servers (streamproc serve's ASGI app) that host the same routes."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Handler] = {}
        self._prefixes: list[tuple[str, str, Handler]] = []

    def route(self, method: str, path: str, handler: Handler, *, prefix: bool = False) -> None:
        # A new list, swapped in whole: routes added after start() never show a half-sorted one.
        if prefix:
            self._prefixes = sorted([*self._prefixes, (method.upper(), path, handler)], key=lambda r: -len(r[1]))
        else:
            self._routes[(method.upper(), path)] = handler

    def find(self, method: str, path: str) -> Optional[Handler]:
        method = "GET" if method.upper() == "HEAD" else method.upper()
        handler = self._routes.get((method, path))
        if handler is not None:
            return handler
        for route_method, route_prefix, prefix_handler in self._prefixes:
            if route_method == method and path.startswith(route_prefix):
                return prefix_handler
        return None


class HttpServer(Router):
    """A `Router` on the standard library's threading HTTP server."""

    def __init__(self, host: str, port: int):
        super().__init__()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length > 0 else b""
                request = Request(
                    self.command, parts.path, parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()}, body,
                )
                handler = server.find(self.command, parts.path)
                try:
                    response = handler(request) if handler else Response.text("not found\n", 404)
                except Exception:  # a bug in one route must not take the port down
                    log.exception("HTTP %s %s failed", self.command, parts.path)
                    response = Response.json({"error": "internal error"}, 500)
                self._send(response)

            def _send(self, response: Response) -> None:
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                if isinstance(response.body, (bytes, bytearray)):
                    self.send_header("Content-Length", str(len(response.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(response.body)
                    return
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    for chunk in response.body:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away
                finally:
                    close = getattr(response.body, "close", None)
                    if close is not None:
                        close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve  # noqa: N815 - http.server's names

            def log_message(self, *args) -> None:  # scrapes are not worth a log line each
                pass

        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
