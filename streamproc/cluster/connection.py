"""The NATS connection of a box, and the asyncio loop it lives on.

nats-py is asyncio-only; the service is threads. One daemon thread runs the event loop; other
threads hand it coroutines with `LoopThread.call`, which waits for the result.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from typing import Any, Awaitable, Optional, TypeVar

from ..errors import StreamprocError
from ..tls import client_context
from ..redact import redact

log = logging.getLogger(__name__)

T = TypeVar("T")


class ClusterError(StreamprocError):
    """The NATS cluster cannot be reached or refused a request (retrying may help)."""

    exit_code = 6  # like a sink: the transport the events leave by
    retryable = True


def require_nats() -> Any:
    try:
        import nats
    except ImportError:
        raise ClusterError("cluster mode needs nats-py: pip install 'streamproc[cluster]'", retryable=False) from None
    return nats


class LoopThread:
    """An asyncio loop on its own daemon thread."""

    def __init__(self, name: str = "cluster"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Awaitable[T], timeout: Optional[float] = None) -> T:
        """Run `coro` on the loop from another thread and return its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def spawn(self, coro: Awaitable[Any]) -> "asyncio.Future":
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def _tls_context(config) -> Optional[ssl.SSLContext]:
    return client_context(config.tls, "cluster.tls", "NATS", lambda message: ClusterError(message, retryable=False))


async def connect(config, name: str) -> Any:
    """A connection to the cluster `config` (a ClusterConfig) describes; reconnects forever."""
    nats = require_nats()

    async def on_error(error: Exception) -> None:
        log.warning("NATS: %s", redact(error))

    async def on_disconnect() -> None:
        log.warning("NATS: disconnected; reconnecting")

    async def on_reconnect() -> None:
        log.info("NATS: reconnected")

    options: dict[str, Any] = dict(
        servers=list(config.servers),
        name=name,
        connect_timeout=config.connect_timeout_s,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        ping_interval=max(1, int(config.lease.fence)),
        max_outstanding_pings=2,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )
    if config.credentials is not None:
        options["user_credentials"] = str(config.credentials)
    if config.username is not None:
        options["user"] = config.username
        options["password"] = config.password.get_secret_value() if config.password else ""
    if config.token is not None:
        options["token"] = config.token.get_secret_value()
    context = _tls_context(config)
    if context is not None:
        options["tls"] = context
    try:
        return await nats.connect(**options)
    except Exception as exc:  # nats-py raises several kinds; one line, no secrets
        where = ", ".join(redact(s) for s in config.servers)
        raise ClusterError(f"cannot connect to the NATS cluster at {where}: {redact(exc) or type(exc).__name__}") from None
