"""The webhook sink against real HTTP receivers that redirect: a 301/302/303 leaves the event in the
outbox (counted, retried, never turned into a body-less GET and called delivered); a 307/308 to
the same origin is followed with the method, body and headers; one to another origin is not, and
the credentials never reach it; `user:pass@host` in the URL goes as Basic auth; the URL's secrets
(userinfo, any query value) never show in the log or the sink's stats."""
from __future__ import annotations

import base64
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

import pytest

from streamproc.config.sinks import SinksConfig
from streamproc.errors import ConfigError
from streamproc.events import caption_event
from streamproc.sinks import create_sinks
from tests.support.segments import make_result, make_segment

pytestmark = pytest.mark.integration

TOKEN = "Bearer hdr-t0ken-9f8e7d"
QUERY_SECRETS = {"access_token": "at-5ecret-1234", "sig": "s1gnature-abcdef", "X-Amz-Signature": "amz-51g-0987",
                 "code": "c0de-secret-5678"}


class Receiver:
    """A receiver on 127.0.0.1 that answers each path as told: (status, Location or None)."""

    def __init__(self, answers: dict[str, tuple[int, Optional[str]]]):
        self.answers = answers
        self.requests: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                owner.requests.append({"method": self.command, "path": path, "query": self.path.partition("?")[2],
                                       "headers": dict(self.headers.items()), "body": body})
                status, location = owner.answers.get(path, (404, None))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = _answer  # noqa: N815

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(answers):
        made.append(Receiver(answers))
        return made[-1]

    yield make
    for receiver in made:
        receiver.stop()


def make_sink(tmp_path, url: str, headers: Optional[dict] = None):
    webhook = {"url": url, "events": ["caption"], "headers": headers if headers is not None else {"Authorization": TOKEN},
               "outbox": str(tmp_path / "webhook.sqlite"), "timeout_s": 2.0, "retry_min_delay_s": 0.05,
               "retry_max_delay_s": 0.2}
    (sink,) = create_sinks(SinksConfig.model_validate({"webhook": webhook}))
    sink.start()
    return sink


def wait_for(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def an_event(i: int = 0):
    return caption_event(make_segment("cam1", i), make_result(f"caption {i}"))


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_redirect_that_changes_the_method_leaves_the_event_in_the_outbox(tmp_path, receivers, status, caplog):
    receiver = receivers({"/hook": (status, "/elsewhere"), "/elsewhere": (200, None)})
    sink = make_sink(tmp_path, receiver.base + "/hook")
    event = an_event()
    try:
        sink.handle(event)
        assert wait_for(lambda: sink.counters["redirects"] >= 2)  # tried, kept, tried again
        assert sink.outbox.count() == 1 and sink.counters["delivered"] == 0
        assert sink.counters["failures"] >= 2
        stats = sink.stats()
    finally:
        sink.stop(0.5)
    assert {r["path"] for r in receiver.requests} == {"/hook"}  # never followed, never a GET
    assert all(r["method"] == "POST" for r in receiver.requests)
    assert f"answered {status}" in stats["last_error"] and "/elsewhere" in stats["last_error"]
    assert f"answered {status} redirecting" in caplog.text
    again = make_sink(tmp_path, receiver.base + "/hook")  # the next run still has it
    try:
        assert again.outbox.count() == 1
    finally:
        again.stop(0.2)


@pytest.mark.parametrize("status", [307, 308])
def test_307_and_308_to_the_same_origin_are_followed_with_method_body_and_headers(tmp_path, receivers, status):
    receiver = receivers({"/hook": (status, "/v2/hook"), "/v2/hook": (200, None)})
    sink = make_sink(tmp_path, receiver.base + "/hook")
    event = an_event()
    try:
        sink.handle(event)
        assert sink.flush(10)
    finally:
        sink.stop(1)
    assert sink.counters["delivered"] == 1 and sink.counters["redirects"] == 0
    final = receiver.requests[-1]
    assert final["path"] == "/v2/hook" and final["method"] == "POST"
    assert json.loads(final["body"]) == event.to_dict() and final["headers"]["Authorization"] == TOKEN


def test_credentials_never_cross_origins(tmp_path, receivers):
    other = receivers({"/collect": (200, None)})
    receiver = receivers({"/hook": (307, other.base + "/collect")})
    sink = make_sink(tmp_path, receiver.base + "/hook")
    try:
        sink.handle(an_event())
        assert wait_for(lambda: sink.counters["redirects"] >= 1)
        assert sink.outbox.count() == 1
    finally:
        sink.stop(0.5)
    assert other.requests == []  # not followed at all: neither the token nor the event went there


def test_user_and_password_in_the_url_go_as_basic_auth(tmp_path, receivers, caplog):
    caplog.set_level(logging.DEBUG)
    receiver = receivers({"/hook": (200, None)})
    url = f"http://hook-user:p%40ss-w0rd-77@127.0.0.1:{receiver.port}/hook"
    sink = make_sink(tmp_path, url, headers={})
    try:
        sink.handle(an_event())
        assert sink.flush(10)
    finally:
        sink.stop(1)
    (request,) = receiver.requests
    expected = base64.b64encode(b"hook-user:p@ss-w0rd-77").decode()
    assert request["headers"]["Authorization"] == f"Basic {expected}"
    assert "p%40ss-w0rd-77" not in caplog.text and "p@ss-w0rd-77" not in caplog.text
    with pytest.raises(ConfigError, match="give one of them"):
        make_sink(tmp_path, url, headers={"Authorization": TOKEN})


def test_no_secret_of_the_url_shows_in_the_log_or_the_stats(tmp_path, receivers, caplog):
    caplog.set_level(logging.DEBUG)
    receiver = receivers({"/hook": (503, None)})
    query = "&".join(f"{name}={value}" for name, value in QUERY_SECRETS.items())
    sink = make_sink(tmp_path, f"http://u:url-pa55word@127.0.0.1:{receiver.port}/hook?{query}",
                     headers={"X-Token": TOKEN})
    try:
        sink.handle(an_event())
        assert wait_for(lambda: sink.counters["failures"] >= 2)
        stats = json.dumps(sink.stats())
    finally:
        sink.stop(0.3)
    assert receiver.requests[0]["query"] == query  # the receiver gets them all
    for secret in [*QUERY_SECRETS.values(), "url-pa55word", "hdr-t0ken-9f8e7d"]:
        assert secret not in caplog.text and secret not in stats, secret
    assert "access_token=***" in stats and "X-Amz-Signature=***" in stats
