"""The webhook sink: an HTTP POST of each event's JSON, for ntfy, Node-RED or any HTTP receiver.

The same delivery guarantees as MQTT, from the same disk outbox (`outbox.py`, its public methods
only): `handle()` appends the event and returns; one sender thread POSTs the rows oldest first,
one at a time (so the receiver sees them in order), and deletes a row only once the receiver
answered 2xx. A receiver that is down, slow (`timeout_s`), answers 5xx, 408 or 429 is retried with
capped, jittered exponential backoff; nothing is lost while it is away or when streamproc
restarts (up to `max_events`). Any other 4xx means the request itself is refused: retrying cannot
help and would hold up every later event, so that row is dropped, counted and logged.

Each request carries `Content-Type: application/json`, `X-Streamproc-Event: <type>` and
`Idempotency-Key: <event id>` (deliveries are at least once: a receiver that died after
processing but before answering gets the event again).

Redirects are never followed blindly: a 307 or 308 to the same origin (scheme, host, port) is
followed with the same method, body and headers (a few hops at most); any other redirect (301,
302, 303, or one to another origin) is a failed delivery: the event stays in the outbox, is
counted (`redirects`) and retried with backoff, and the log says where the receiver points. So an
alert is never turned into a body-less GET and counted as delivered, and the Authorization
header never reaches another origin. `https://user:pass@host/...` is sent as Basic auth to that
host (the URL itself never carries it). Configured headers, the URL's password and its query
values are secrets: registered for redaction and never logged; every URL shown is
`streamproc.redact.redact_url`'s (userinfo and every query value masked).
"""
from __future__ import annotations

import base64
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import unquote, urljoin, urlsplit

from ..errors import ConfigError, SinkError
from ..events import Event
from ..bus import BasePlugin
from ..redact import redact, redact_url, register_secret, register_url, split_url

if TYPE_CHECKING:  # pragma: no cover
    from ..config.sinks import WebhookConfig
    from .outbox import Outbox

log = logging.getLogger(__name__)

_RETRY_STATUSES = {408, 425, 429}  # and every 5xx
_FOLLOWED = {307, 308}  # redirects that keep the method and body (RFC 9110 15.4.8, 15.4.9)
_MAX_HOPS = 3
_REPEAT_WARNING_S = 300.0


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Every 3xx comes back as an HTTPError; the sink decides what to do with it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def split_credentials(url: str) -> tuple[str, Optional[str]]:
    """(the URL without userinfo, its `Authorization: Basic` value or None)."""
    scheme, userinfo, rest = split_url(url)
    if userinfo is None:
        return url, None
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode("utf-8")).decode("ascii")
    return f"{scheme}{rest}", f"Basic {token}"


class _Redirect(Exception):
    def __init__(self, status: int, location: str):
        super().__init__(status, location)
        self.status, self.location = status, location


class WebhookSink(BasePlugin):
    name = "webhook"

    def __init__(self, config: "WebhookConfig"):
        self.config = config
        register_url(config.url, query_values=True)
        self.where = redact_url(config.url)
        self.url, basic = split_credentials(config.url)
        self._headers = {name: value.get_secret_value() for name, value in config.headers.items()}
        if basic is not None:
            if any(name.lower() == "authorization" for name in self._headers):
                raise ConfigError(f"sinks.webhook: {self.where} has a user and password and headers has "
                                  "Authorization too: give one of them")
            self._headers["Authorization"] = basic
        for value in self._headers.values():
            register_secret(value)
        self._opener = urllib.request.build_opener(_NoRedirects)
        self.outbox: Optional["Outbox"] = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._busy = False
        self.counters = {"handled": 0, "delivered": 0, "attempts": 0, "failures": 0, "rejected": 0, "redirects": 0}
        self.last_error: Optional[str] = None
        self._last_warning = ("", 0.0)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        from .. import __version__
        from .outbox import Outbox

        if self._thread is not None:
            return
        cfg = self.config
        self.outbox = Outbox(cfg.outbox, max_messages=cfg.max_events, when_full=cfg.when_full)
        self._user_agent = f"streamproc/{__version__}"
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def handle(self, event: Event) -> None:
        if self.outbox is None or self._closed:
            raise SinkError("the webhook sink is not running", retryable=False)
        if event.type not in self.config.events:
            return
        self.counters["handled"] += 1
        self.outbox.append(event.type, event.to_bytes(), 1, False, event.id)
        self._wake.set()

    def flush(self, timeout_s: float = 10.0) -> bool:
        if self.outbox is None:
            return True
        deadline = time.monotonic() + timeout_s
        while self.outbox.count() > 0 or self._busy:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._closed or self.outbox is None:
            self._closed = True
            return
        if not self.flush(max(0.0, timeout_s - 2.0)):
            log.warning(
                "webhook: %d events not yet delivered to %s; they stay in %s for the next run",
                self.outbox.count(), self.where, self.outbox.path,
            )
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(1.0, self.config.timeout_s + 1.0))
        self.outbox.close()

    def stats(self) -> dict[str, Any]:
        outbox = self.outbox.stats() if self.outbox is not None and not self._closed else {}
        return {**self.counters, "outbox": outbox, "last_error": self.last_error}

    # -- the sender thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._send_pending()
            except Exception:  # e.g. the outbox's disk failed: report, wait, go on (never die silently)
                self._busy = False
                log.exception("webhook sender failed; trying again in 5 s")
                self._stop.wait(5.0)

    def _send_pending(self) -> None:
        assert self.outbox is not None
        delay = self.config.retry_min_delay_s
        while not self._stop.is_set():
            self._busy = True
            rows = self.outbox.peek(limit=1)
            if not rows:
                self._busy = False
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            row = rows[0]
            outcome = self._post(row.payload, row.topic, row.event_id or "")
            if outcome == "retry":
                self._busy = False
                wait = min(self.config.retry_max_delay_s, delay) * random.uniform(0.8, 1.2)
                delay = min(self.config.retry_max_delay_s, delay * 2)
                self._stop.wait(wait)
                continue
            delay = self.config.retry_min_delay_s
            self.outbox.delete(row.seq)
            self._busy = False

    def _post(self, body: bytes, event_type: str, event_id: str) -> str:
        """'done' (2xx), 'rejected' (4xx that retrying cannot fix) or 'retry'."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
            "X-Streamproc-Event": event_type,
            "Idempotency-Key": event_id,
            **self._headers,
        }
        url = self.url
        self.counters["attempts"] += 1
        for _ in range(_MAX_HOPS + 1):
            try:
                status, location = self._send(url, body, headers), None
            except OSError as error:  # refused, reset, timed out, DNS (URLError is an OSError)
                self._failed(f"webhook {self.where} unreachable: {redact(getattr(error, 'reason', error))}")
                return "retry"
            except _Redirect as redirect:
                status, location = redirect.status, urljoin(url, redirect.location)
            if location is None:
                return self._outcome(status, event_id)
            if status not in _FOLLOWED or origin(location) != origin(url):
                return self._redirected(status, location)
            url = location  # same origin, method and body kept: the credentials may go there
        return self._redirected(status, location)

    def _send(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.config.timeout_s) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as error:
            status, location = error.code, error.headers.get("Location") if error.headers else None
            error.close()
            if 300 <= status < 400 and location:
                raise _Redirect(status, location) from None
            return status
        except ValueError as error:  # a URL urllib cannot use
            raise OSError(str(error)) from None

    def _outcome(self, status: int, event_id: str) -> str:
        if 200 <= status < 300:
            self.counters["delivered"] += 1
            if self.last_error is not None:
                log.warning("webhook %s delivers again", self.where)
            self.last_error = None
            return "done"
        if status in _RETRY_STATUSES or status >= 500 or 300 <= status < 400:
            self._failed(f"webhook {self.where} answered {status}")
            return "retry"
        self.counters["rejected"] += 1
        log.error("webhook %s refused event %s with %d; dropped (retrying cannot help)", self.where, event_id, status)
        return "rejected"

    def _redirected(self, status: int, location: str) -> str:
        """A redirect not followed: the event stays in the outbox (retried with backoff)."""
        self.counters["redirects"] += 1
        why = "to another origin" if status in _FOLLOWED else "(only 307/308 keep the method and body)"
        self._failed(f"webhook {self.where} answered {status} redirecting {why} to {redact_url(location)}: "
                     "not followed; set sinks.webhook.url to where the receiver is")
        return "retry"

    def _failed(self, message: str) -> None:
        self.counters["failures"] += 1
        self.last_error = message
        previous, when = self._last_warning
        now = time.monotonic()
        if message != previous or now - when > _REPEAT_WARNING_S:
            self._last_warning = (message, now)
            pending = self.outbox.count() if self.outbox is not None else 0
            log.warning("%s; retrying with backoff, %d events kept in the outbox", message, pending)
