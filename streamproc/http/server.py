"""uvicorn in a background thread: `HttpServer(app, host, port, limits)`, `start()`, `stop()`, `port`.

The limits a maintained server gives, set from `HttpLimits`:
- the request head: at most `max_header_kb` (h11's limit; more is a 400), and whole within
  `header_timeout_s` of the connection opening or of the previous answer, else the connection is
  closed. uvicorn's own keep-alive timer is cancelled by any byte, so a client that trickles a
  header a byte at a time, or opens a connection and says nothing, would hold it forever; the
  protocol below adds that deadline;
- `keep_alive_s` for idle kept-alive connections (uvicorn's);
- at most `max_connections` connections and requests at once; a request beyond gets 503.
Body size and body stalls are the middleware's (guard.py). When a connection must close while
the client is still sending a body (a 413 to a client that asked for `Connection: close`), the
server stops writing, discards what still comes for at most `LINGER_S`, then closes: closing at
once with unread data would reset the connection, and the client would lose the answer.

The h11 protocol is used rather than httptools because it enforces the header limit itself.
Malformed requests (`Content-Length: abc`, a broken request line) are answered 400 by h11;
client disconnects are logged by uvicorn through `logging`, never as raw tracebacks.

The listening socket is bound in the constructor, so a port in use fails there (the caller turns
it into a one-line config error) and `port` is known before start (port 0: a free one).
"""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Any, Optional

from ..config.http import HttpLimits

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 30.0
LINGER_S = 5.0


class _LingeringTransport:
    """The transport uvicorn's protocol writes to, whose close() lingers while the request body
    is still arriving (see the module docstring). Everything else is the real transport's."""

    def __init__(self, transport: Any, protocol: Any):
        self._transport = transport
        self._protocol = protocol
        self._closing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._protocol.body_unread() and self._transport.can_write_eof():
            self._protocol.linger()
            self._transport.write_eof()  # the answer goes out, then our side of the connection ends
            self._transport.resume_reading()
        else:
            self._transport.close()


def _protocol(header_timeout_s: float) -> type:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadDeadlineProtocol(H11Protocol):
        """H11Protocol plus a deadline for each request head and a lingering close (see the
        module docstring)."""

        _head_timer: Optional[asyncio.TimerHandle] = None
        _linger_timer: Optional[asyncio.TimerHandle] = None
        _raw: Any = None
        _lost = False

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            self._raw = transport
            super().connection_made(_LingeringTransport(transport, self))
            self._arm_head_timer()

        def data_received(self, data: bytes) -> None:
            if self._linger_timer is not None:
                return  # lingering: the rest of a refused body, read and dropped
            cycle = self.cycle
            super().data_received(data)
            if self.cycle is not cycle:  # a whole request head arrived
                self._disarm_head_timer()

        def eof_received(self) -> Optional[bool]:
            if self._linger_timer is not None:
                self._close_now()
            return None

        def on_response_complete(self) -> None:
            cycle = self.cycle
            super().on_response_complete()
            if self.cycle is cycle and not self.transport.is_closing():  # no pipelined request started
                self._arm_head_timer()

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self._lost = True
            self._disarm_head_timer()
            if self._linger_timer is not None:
                self._linger_timer.cancel()
            super().connection_lost(exc)

        def body_unread(self) -> bool:
            return not self._lost and self.conn.their_state is h11.SEND_BODY

        def linger(self) -> None:
            self._disarm_head_timer()
            self._linger_timer = self.loop.call_later(LINGER_S, self._close_now)

        def _close_now(self) -> None:
            self._raw.close()

        def _arm_head_timer(self) -> None:
            self._disarm_head_timer()
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timeout)

        def _disarm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeadDeadlineProtocol


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (IPv4 or IPv6); OSError when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class HttpServer:
    """An ASGI app on uvicorn in a daemon thread. Also a context manager (start/stop)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, limits: Optional[HttpLimits] = None):
        import uvicorn

        limits = limits or HttpLimits()
        uvicorn_log = logging.getLogger("uvicorn.error")
        if uvicorn_log.level == logging.NOTSET:  # its start/stop chatter; we log what the port serves
            uvicorn_log.setLevel(logging.WARNING)
        self.host = host
        self._socket = bind(host, port)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            http=_protocol(limits.header_timeout_s),
            h11_max_incomplete_event_size=limits.max_header_kb * 1024,
            timeout_keep_alive=max(1, round(limits.keep_alive_s)),
            limit_concurrency=limits.max_connections,
            lifespan="off",
            log_config=None,  # our logging set-up (JSON format, redaction) handles uvicorn's records
            access_log=False,  # routes log what is worth it, without message content
            timeout_graceful_shutdown=3,
            server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Serve from now on; returns once the server accepts connections."""
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name=f"http-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server on {self.url} did not start")
            time.sleep(0.01)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, give running requests a moment, then close everything."""
        if self._thread is None:
            self._socket.close()
            return
        self._server.should_exit = True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(2.0)
        self._thread = None

    def __enter__(self) -> "HttpServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
