"""The one middleware in front of every route of both ports (`run`'s and `serve`'s).

In this order, before any route runs:
0. Head size: a request line and headers over the limit are 431 (h11 itself refuses a head that
   grows past it while incomplete; one that arrives whole in a single read is caught here).
1. Host: the Host header names this server (its address, an IP literal, localhost, this machine's
   name or a configured name), else 421. A page on another site that rebinds its DNS name to
   127.0.0.1 sends its own name, so it cannot read the API.
2. Size: a declared Content-Length over the limit is 413 before a byte of the body is read; a
   chunked body is counted as it arrives and cut off the same way. A body that stalls is 408.
3. Key: with keys configured, every route but the public ones (health, the page's static shell)
   needs `Authorization: Bearer KEY` or `X-API-Key: KEY`; else 401. Never from a query string or
   a cookie, so a key cannot leak through a URL or ride along on another site's request.
4. State-changing methods (anything but GET/HEAD/OPTIONS) also refuse what a browser sends for
   another site: `Sec-Fetch-Site: cross-site|same-site`, an `Origin` that is not this server (403),
   and the form content types a cross-site <form> can post without CORS (415).
Every answer gets CSP (same origin only, no framing), nosniff and Referrer-Policy: no-referrer.

Refusals are JSON in OpenAI's error shape ({"error": {"message", "type", "param", "code"}}), which
the OpenAI SDKs read and the web page shows. Pure ASGI (no Starlette request objects), so it adds
microseconds, and nothing here reads a body it is about to refuse.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import socket
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Optional

from starlette.requests import ClientDisconnect

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What an HTML form on any site can POST here without a CORS preflight.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
    "script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_WILDCARDS = ("0.0.0.0", "::", "")
# Answers after which the connection is closed. Not 413: closing with the body unread would reset
# the connection under a client still sending, which then never reads the answer; the server
# discards the rest instead, for at most the head deadline (server.py).
_CLOSE_AFTER = (400, 408, 431)


class HostCheck:
    """Which Host headers this server answers to."""

    def __init__(self, bound: str, allowed: Iterable[str] = ()):
        allowed = {name.lower() for name in allowed}
        self.any = "*" in allowed
        machine = socket.gethostname().lower()
        self.names = allowed | {"localhost", machine, machine.split(".")[0], machine.split(".")[0] + ".local"}
        if bound.strip("[]") not in _WILDCARDS:
            self.names.add(bound.strip("[]").lower())

    def allows(self, header: Optional[str]) -> bool:
        if self.any or header is None:  # HTTP/1.0 without Host: not a browser
            return True
        host = host_of(header)
        if host in self.names:
            return True
        try:  # an IP literal cannot be rebound to another address by DNS
            ipaddress.ip_address(host)
            return True
        except ValueError:
            return False


def host_of(netloc: str) -> str:
    """`name` of `name:port`, `::1` of `[::1]:port`, lower case, without a trailing dot."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:].split("]", 1)[0]
    if netloc.count(":") == 1:
        netloc = netloc.split(":", 1)[0]
    return netloc.rstrip(".")


@dataclass(frozen=True)
class Policy:
    keys: tuple[bytes, ...]
    hosts: HostCheck
    max_body: int  # bytes
    body_timeout_s: float
    max_head: int = 16 * 1024  # bytes of request target and headers
    is_public: Callable[[Scope], bool] = field(default=lambda scope: False)


def error_body(message: str, code: str, type_: str = "invalid_request_error") -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


class _Exchange:
    """One request's `send`, with the security headers added; a refusal sent here replaces
    whatever the route would have answered."""

    def __init__(self, send: Send):
        self._send = send
        self.started = False
        self.refused = False

    async def send(self, message: Message) -> None:
        if self.refused:
            return  # we answered already; the route's late answer goes nowhere
        if message["type"] == "http.response.start":
            self.started = True
            present = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(n, v) for n, v in SECURITY_HEADERS if n not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await self._send(message)

    async def refuse(self, status: int, message: str, code: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        if self.started:  # too late for an answer: the route sees a disconnect
            self.refused = True
            return
        body = error_body(message, code)
        await self.send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *(((b"connection", b"close"),) if status in _CLOSE_AFTER else ()), *headers]})
        await self.send({"type": "http.response.body", "body": body})
        self.refused = True


class Guard:
    """ASGI middleware applying a `Policy` (see the module docstring)."""

    def __init__(self, app: Any, policy: Policy):
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(send)
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await exchange.refuse(*refusal)
            return
        try:
            await self.app(scope, self._bounded(receive, exchange), exchange.send)
        except ClientDisconnect:  # the client left, or we refused its body: nothing more to say
            pass

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> Optional[tuple]:
        p = self.policy
        head = len(scope.get("raw_path", b"")) + len(scope.get("query_string", b"")) + sum(
            len(name) + len(value) + 4 for name, value in scope.get("headers", []))
        if head > p.max_head:
            return 431, f"the request's headers are larger than {_size(p.max_head)}", "headers_too_large"
        if not p.hosts.allows(headers.get("host")):
            return 421, "this server does not answer to that host name (see http.allowed_hosts)", "misdirected_request"
        declared = headers.get("content-length")
        if declared is not None and not declared.strip().isdigit():
            return 400, "Content-Length is not a number", "invalid_request"
        if declared is not None and int(declared) > p.max_body:
            return 413, f"the request body is larger than {_size(p.max_body)}", "request_too_large"
        if p.keys and not p.is_public(scope) and not _key_ok(headers, p.keys):
            return 401, "Incorrect API key provided", "invalid_api_key", ((b"www-authenticate", b"Bearer"),)
        if scope["method"] not in SAFE_METHODS:
            return _foreign(headers)
        return None

    def _bounded(self, receive: Receive, exchange: _Exchange) -> Receive:
        """`receive` that counts the body against the limit and gives up on a stalled one; the
        route then sees a disconnect and our refusal is the answer."""
        limit, timeout = self.policy.max_body, self.policy.body_timeout_s
        state = {"received": 0, "done": False}

        async def bounded() -> Message:
            if exchange.refused:
                return {"type": "http.disconnect"}
            if state["done"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout)
            except asyncio.TimeoutError:
                await exchange.refuse(408, f"the request body stalled for {timeout:g} s", "request_timeout")
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    await exchange.refuse(413, f"the request body is larger than {_size(limit)}", "request_too_large")
                    return {"type": "http.disconnect"}
                state["done"] = not message.get("more_body", False)
            else:
                state["done"] = True
            return message

        return bounded


def _headers(scope: Scope) -> dict[str, str]:
    # Repeated headers: the last one wins, except that a second Host/Content-Length is refused by h11.
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}


def _key_ok(headers: dict[str, str], keys: tuple[bytes, ...]) -> bool:
    given = headers.get("x-api-key", "")
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        given = token.strip()
    if not given:
        return False
    offered = given.encode("latin-1")
    matches = [hmac.compare_digest(offered, key) for key in keys]  # every key compared: no timing hint
    return any(matches)


def _foreign(headers: dict[str, str]) -> Optional[tuple]:
    site = headers.get("sec-fetch-site", "").lower()
    if site in ("cross-site", "same-site"):
        return 403, f"a request from another site ({site}) cannot change anything here", "forbidden_origin"
    origin = headers.get("origin")
    if origin is not None:
        _, _, netloc = origin.partition("://")
        if origin == "null" or not netloc or host_of(netloc) != host_of(headers.get("host", "")) or (
            _port(netloc) != _port(headers.get("host", ""))
        ):
            return 403, "a request from another origin cannot change anything here", "forbidden_origin"
    kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind in FORM_TYPES:
        return 415, f"{kind} is not accepted here: send application/json", "unsupported_media_type"
    return None


def _port(netloc: str) -> str:
    netloc = netloc.strip().lower()
    tail = netloc.rsplit("]", 1)[-1] if netloc.startswith("[") else netloc
    return tail.rsplit(":", 1)[1] if ":" in tail else ""


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 and limit % (1024 * 1024) == 0 else f"{limit} bytes"
