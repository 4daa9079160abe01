"""The one HTTP stack (streamproc/http) on a real uvicorn on 127.0.0.1, with stand-in routes: the
key on every route but the public ones, the Host check, refusals of what another site's page can
send, the body limit before the body is read, the head deadline against half-open connections,
malformed requests, security headers, and a config that would open the port without a key."""
from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from streamproc.config import ConfigError, config_from_data
from streamproc.config.http import HttpConfig, HttpLimits
from streamproc.http import HttpServer, PublicRoute, build_app

KEY = "k-3f9a1c2e8b7d"
pytestmark = pytest.mark.timeout(60)


class Calls:
    def __init__(self) -> None:
        self.posts: list[int] = []


@pytest.fixture
def serve():
    started: list[HttpServer] = []

    def make(config: HttpConfig) -> tuple[str, Calls]:
        calls = Calls()

        async def hello(request: Request) -> JSONResponse:
            return JSONResponse({"ok": True})

        async def change(request: Request) -> JSONResponse:
            body = await request.body()
            calls.posts.append(len(body))
            return JSONResponse({"bytes": len(body)})

        routes = [PublicRoute("/healthz", hello), Route("/metrics", hello), Route("/api/thing", hello),
                  Route("/api/change", change, methods=["POST"])]
        server = HttpServer(build_app(routes, config), "127.0.0.1", 0, config.limits)
        server.start()
        started.append(server)
        return f"http://127.0.0.1:{server.port}", calls

    yield make
    for server in started:
        server.stop()


def call(url: str, body: bytes | None = None, headers: dict | None = None, method: str | None = None):
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), error.headers


def raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send `data`, read one whole answer (its head and Content-Length bytes) or until closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        while True:
            head, sep, body = answer.partition(b"\r\n\r\n")
            if sep:
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    return answer
            chunk = sock.recv(65536)
            if not chunk:
                return answer
            answer += chunk


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def test_every_route_but_the_public_ones_needs_the_key(serve):
    base, _ = serve(HttpConfig(api_key=[KEY]))
    assert call(base + "/healthz")[0] == 200
    for path in ("/metrics", "/api/thing"):
        status, body, headers = call(base + path)
        assert status == 401 and body["error"]["code"] == "invalid_api_key" and headers["WWW-Authenticate"] == "Bearer"
        assert call(base + path, headers={"Authorization": "Bearer wrong"})[0] == 401
        assert call(base + path + f"?api_key={KEY}")[0] == 401  # never from the URL
        assert call(base + path, headers={"Authorization": f"Bearer {KEY}"})[0] == 200
        assert call(base + path, headers={"X-API-Key": KEY})[0] == 200


def test_a_list_of_keys_and_public_metrics(serve):
    base, _ = serve(HttpConfig(api_key=["first-key-1", "second-key-2"], public_metrics=True))
    assert call(base + "/metrics")[0] == 200
    assert call(base + "/api/thing")[0] == 401
    assert call(base + "/api/thing", headers={"X-API-Key": "second-key-2"})[0] == 200


def test_security_headers_on_every_answer(serve):
    base, _ = serve(HttpConfig(api_key=[KEY]))
    for path in ("/healthz", "/api/thing", "/nothing-here"):
        headers = call(base + path)[2]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"


def test_host_names_other_than_this_server_get_421(serve):
    base, _ = serve(HttpConfig(allowed_hosts=["cams.example.org"]))
    assert call(base + "/api/thing", headers={"Host": "attacker.example"})[0] == 421  # DNS rebinding
    for host in ("127.0.0.1:1", "localhost", "cams.example.org", "[::1]:9", "192.0.2.7"):
        assert call(base + "/api/thing", headers={"Host": host})[0] == 200, host
    anything, _ = serve(HttpConfig(allowed_hosts=["*"]))
    assert call(anything + "/api/thing", headers={"Host": "attacker.example"})[0] == 200


@pytest.mark.parametrize("keys", [[], [KEY]], ids=["anonymous", "with-key"])
def test_a_cross_site_post_is_refused(serve, keys):
    base, calls = serve(HttpConfig(api_key=keys))
    auth = {"Authorization": f"Bearer {KEY}"} if keys else {}
    # what a <form method=post> on another site sends: a form type, its Origin, Sec-Fetch-Site
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example",
            "Sec-Fetch-Site": "cross-site"}
    assert call(base + "/api/change", b"a=1", form)[0] == (401 if keys else 403)  # no key: a form cannot send one
    assert call(base + "/api/change", b"a=1", {**form, **auth})[0] == 403
    assert call(base + "/api/change", b"a=1", {**auth, "Content-Type": "text/plain"})[0] == 415
    assert call(base + "/api/change", b"{}", {**auth, "Content-Type": "application/json",
                                              "Origin": "https://evil.example"})[0] == 403
    assert call(base + "/api/change", b"{}", {**auth, "Content-Type": "application/json", "Origin": "null"})[0] == 403
    assert calls.posts == []
    same = {**auth, "Content-Type": "application/json", "Origin": base, "Sec-Fetch-Site": "same-origin"}
    assert call(base + "/api/change", b"{}", same)[:2] == (200, {"bytes": 2})
    assert call(base + "/api/change", b"{}", {**auth, "Content-Type": "application/json"})[0] == 200  # a script


def test_a_200_mib_post_is_refused_before_it_is_read(serve):
    base, calls = serve(HttpConfig(api_key=[KEY], limits=HttpLimits(max_body_kb=1024)))
    head = (f"POST /api/change HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {200 * 1024 * 1024}\r\n\r\n").encode()
    answer = raw(port_of(base), head)  # not one byte of the body sent: the answer comes anyway
    assert answer.startswith(b"HTTP/1.1 413 ") and b"request_too_large" in answer
    assert calls.posts == []


def test_a_chunked_body_over_the_limit_is_cut_off(serve):
    base, calls = serve(HttpConfig(limits=HttpLimits(max_body_kb=64)))
    with socket.create_connection(("127.0.0.1", port_of(base)), timeout=10) as sock:
        sock.sendall(b"POST /api/change HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        sent, chunk = 0, b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
        sock.settimeout(0.05)
        answer = b""
        while not answer and sent < 200 * 1024 * 1024:
            try:
                sock.sendall(chunk)
                sent += 0x4000
                answer = sock.recv(4096)
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(10)
        answer += sock.recv(4096) if not answer else b""
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert sent < 2 * 1024 * 1024, f"{sent} bytes went in before the refusal"
    assert calls.posts == []


def test_half_open_connections_are_closed_by_the_head_deadline(serve):
    base, _ = serve(HttpConfig(limits=HttpLimits(header_timeout_s=1.0, max_connections=500)))
    port = port_of(base)
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(200)]
    try:
        for index, sock in enumerate(sockets):  # half the heads never end, the others never start
            if index % 2:
                sock.sendall(b"GET /api/thing HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        for sock in sockets:
            assert sock.recv(1024) == b"", "the server answered or kept a half-open connection"
    finally:
        for sock in sockets:
            sock.close()
    assert call(base + "/api/thing")[0] == 200  # and the port serves as before


def test_a_trickled_head_does_not_reset_the_deadline(serve):
    base, _ = serve(HttpConfig(limits=HttpLimits(header_timeout_s=1.0)))
    with socket.create_connection(("127.0.0.1", port_of(base)), timeout=10) as sock:
        closed_after = None
        started = time.monotonic()
        for byte in b"GET /api/thing HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa":
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - started
                break
            time.sleep(0.2)
        if closed_after is None:
            sock.settimeout(10)
            assert sock.recv(1024) == b""
    # the head took longer than the deadline: it was closed, not served, byte by byte or not


def test_malformed_requests_get_400_not_a_traceback(serve, caplog):
    base, _ = serve(HttpConfig())
    port = port_of(base)
    answer = raw(port, b"POST /api/change HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    answer = raw(port, b"GET /api/thing HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 64 * 1024 + b"\r\n\r\n")
    assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 "))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # a client that leaves mid-body
        sock.sendall(b"POST /api/change HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{")
    time.sleep(0.3)
    assert call(base + "/api/thing")[0] == 200
    assert "Traceback" not in caplog.text


def test_a_stalled_body_gets_408(serve):
    base, calls = serve(HttpConfig(limits=HttpLimits(body_timeout_s=0.5)))
    with socket.create_connection(("127.0.0.1", port_of(base)), timeout=10) as sock:
        sock.sendall(b"POST /api/change HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{")
        assert sock.recv(4096).startswith(b"HTTP/1.1 408 ")
    assert calls.posts == []


def test_a_port_beyond_loopback_without_a_key_is_refused_at_load():
    base = {"sources": [{"name": "cam", "path": "/x.mp4"}]}
    with pytest.raises(ConfigError) as refused:
        config_from_data({**base, "http": {"host": "0.0.0.0"}})
    message = str(refused.value)
    assert "\n" not in message and "http.api_key" in message and "allow_anonymous" in message
    assert config_from_data({**base, "http": {"host": "0.0.0.0", "allow_anonymous": True}}).http.keys() == ()
    assert config_from_data({**base, "http": {"host": "0.0.0.0", "api_key": KEY}}).http.keys() == (KEY,)
    assert config_from_data({**base, "http": {"host": "::1"}}).http.host == "::1"
    with pytest.raises(ConfigError, match="web.control needs http.api_key"):
        config_from_data({**base, "web": {"control": True}})


def test_the_old_keys_still_work_with_a_warning(caplog):
    data = {"sources": [{"name": "cam", "path": "/x.mp4"}],
            "service": {"metrics": {"host": "0.0.0.0", "port": 9999}}, "web": {"api_key": KEY, "control": True}}
    config = config_from_data(data)
    assert (config.http.host, config.http.port, config.http.keys()) == ("0.0.0.0", 9999, (KEY,))
    warnings = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(warnings) == 1 and "service.metrics.host" in warnings[0] and "http.api_key" in warnings[0]
    with pytest.raises(ConfigError, match="service.metrics.port and http.port"):
        config_from_data({**data, "http": {"port": 1}})
