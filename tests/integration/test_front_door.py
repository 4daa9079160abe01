"""Issue 23 against the real service process (`streamproc run`, the tiny model behind
tests/support/fast_backend.py): with an API key on the HTTP port and a webhook whose URL carries
every secret form (userinfo, access_token, sig, X-Amz-Signature, code) and a header token, all
given through ${VAR}, none of them shows in stderr, stdout, the MQTT payloads, the web view's
event feed or the caption store, while the masked forms do show where the webhook's failures are
reported; the port answers 401 without the key and the feed with it."""
from __future__ import annotations

import http.client
import json
import signal
import sqlite3
import threading
from pathlib import Path

import pytest

from tests.integration.test_webhook_redirects import Receiver
from tests.support.cli_runs import fast_config, write_yaml
from tests.support.mosquitto import free_port
from tests.support.service import ServiceProcess, http_get, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SECRETS = {
    "API_KEY": "front-door-api-k3y-1",
    "HOOK_PASSWORD": "h00k-pa55-w0rd-2",
    "HOOK_TOKEN": "Bearer h00k-t0ken-3",
    "ACCESS_TOKEN": "acc3ss-t0ken-4",
    "SIG": "s1gnature-val-5",
    "AMZ_SIG": "amz-s1gnature-6",
    "CODE": "0auth-c0de-val-7",
}


class Feed:
    """The web view's event feed, read in a thread (with the key) until closed."""

    def __init__(self, port: int, key: str):
        self.data = b""
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.connection.request("GET", "/api/events", headers={"Authorization": f"Bearer {key}"})
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                chunk = self.response.read1(65536)
                if not chunk:
                    return
                self.data += chunk
        except (OSError, ValueError, http.client.HTTPException):
            return

    def close(self) -> None:
        self.connection.close()


def test_no_secret_reaches_any_channel(tmp_path, tiny_model_dir, make_video, broker, subscribe):
    clip = make_video(duration_s=20.0, fps=5, width=64, height=48, gop=5)
    receiver = Receiver({"/hook": (503, None)})  # failing: its errors go into logs and stats events
    port = free_port()
    store = tmp_path / "captions.sqlite"
    hook = ("http://hook-user:${HOOK_PASSWORD}@127.0.0.1:" f"{receiver.port}"
            "/hook?access_token=${ACCESS_TOKEN}&sig=${SIG}&X-Amz-Signature=${AMZ_SIG}&code=${CODE}")
    sinks = {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "topic_prefix": "sp", "client_id": f"fd-{tmp_path.name}"[:60]},
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "webhook": {"url": hook, "events": ["caption", "alert"], "headers": {"X-Token": "${HOOK_TOKEN}"},
                    "outbox": str(tmp_path / "webhook.sqlite"), "retry_min_delay_s": 0.1, "retry_max_delay_s": 0.5},
    }
    config = fast_config(tiny_model_dir, [{"name": "cam1", "path": str(clip), "realtime": True}], sinks=sinks,
                         service={"stats_interval_s": 1.0, "shutdown_timeout_s": 5.0},
                         store={"enabled": True, "path": str(store)},
                         http={"enabled": True, "host": "127.0.0.1", "port": port, "api_key": "${API_KEY}"})
    sub = subscribe(broker.port, ["sp/#"])
    path = write_yaml(tmp_path / "front.yaml", config)
    feed = None
    try:
        with ServiceProcess(["-m", "tests.support.fast_backend", "-v", "run", str(path)], tmp_path, env=SECRETS) as svc:
            assert svc.metrics_port() == port
            base = f"http://127.0.0.1:{port}"
            assert http_get(base + "/healthz")[0] in (200, 503)  # public
            for route in ("/metrics", "/api/site", "/api/cameras", "/api/search?q=a", "/api/events"):
                assert http_get(base + route)[0] == 401, route
            key = SECRETS["API_KEY"]
            assert wait_until(lambda: http_get(base + "/api/site", key=key)[0] == 200, 60)  # mounted once started
            feed = Feed(port, key)
            assert wait_until(lambda: b"answered 503" in feed.data and b'"type":"stats"' in feed.data, 60), feed.data[-2000:]
            assert wait_until(lambda: any(b"answered 503" in m.payload for m in sub.snapshot()), 30)
            assert wait_until(lambda: any(m.topic.endswith("/captions") for m in sub.snapshot()), 30)
            svc.send(signal.SIGTERM)
            assert svc.wait(60) == 0
            stderr, stdout = svc.log(), svc.stdout()
    finally:
        if feed is not None:
            feed.close()
        receiver.stop()
    payloads = b"\n".join(m.topic.encode() + b" " + m.payload for m in sub.snapshot())
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("captions.sqlite*"))
    with sqlite3.connect(store) as db:
        rows = "\n".join(str(row) for row in db.execute("SELECT data FROM entries"))
    assert rows, "the store kept nothing: the check below would prove nothing"
    channels = {"stderr": stderr.encode(), "stdout": stdout.encode(), "mqtt": payloads, "event feed": feed.data,
                "store": stored + rows.encode()}
    for name, text in channels.items():
        for secret in SECRETS.values():
            for form in {secret, secret.removeprefix("Bearer ")}:
                assert form.encode() not in text, f"{form!r} in {name}"
    # the failures are reported where they should be, masked
    masked = b"hook-user:***@127.0.0.1"
    for name in ("stderr", "mqtt", "event feed"):
        assert masked in channels[name] and b"access_token=***" in channels[name], name
    assert receiver.requests, "the webhook never tried"
    sent = receiver.requests[0]
    assert SECRETS["ACCESS_TOKEN"] in sent["query"] and sent["headers"]["X-Token"] == SECRETS["HOOK_TOKEN"]
    assert json.loads(sent["body"])["type"] == "caption"
    assert Path(tmp_path / "webhook.sqlite").exists()
