"""One test per defect of issue 11, each failing before its fix, against the real service process.

1 stop closed a backend under a running call (a crash); 2 a full outbox disk lost events silently;
3 passwords with '@' or '/' leaked, a mistyped scheme was a file path; 4 exit codes said 0;
5 tracebacks; 6 misleading messages; 7 `reconnect.max_attempts` was not a limit; 8 a PNG was a
one-frame video. The model is the tiny one behind tests/support/fast_backend.py (torch-free); the
native engine's version of 1 is tests/tpu/test_service_sigterm.py.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.integration.test_outbox_disk_full import fill, small_filesystem
from tests.support.cli_runs import assert_no_secret, fast_config, outbox_bytes, password, run_cli, write_yaml
from tests.support.service import ServiceProcess, wait_until


@pytest.fixture(scope="module")
def clip(make_video) -> Path:
    return make_video(duration_s=3.0, fps=5, width=64, height=48, gop=5)


@pytest.fixture(scope="module")
def long_clip(make_video) -> Path:
    return make_video(duration_s=8.0, fps=5, width=64, height=48, gop=5)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mqtt_down(tmp: Path, outbox: Path, **overrides) -> dict:
    mqtt = {"host": "127.0.0.1", "port": closed_port(), "client_id": f"h-{tmp.name}"[:60],
            "reconnect_min_delay_s": 0.2, "reconnect_max_delay_s": 0.5, "connect_timeout_s": 2, **overrides}
    return {"mqtt": mqtt, "outbox": {"path": str(outbox), "synchronous": "normal"}}


def fast_service(tmp: Path, config: dict, env=None, name="service") -> ServiceProcess:
    path = write_yaml(tmp / f"{name}.yaml", config)
    return ServiceProcess(["-m", "tests.support.fast_backend", "run", str(path)], tmp, name=name, env=env)


# 1 -------------------------------------------------------------------------------------------


def test_1_sigterm_during_a_long_model_call_aborts_it_before_closing_the_backend(tmp_path, tiny_model_dir, clip):
    """The call would run 120 s; stop aborts it, joins the worker, then closes the backend (the
    fast backend, like the native engine, dies with 139 if closed under a running call)."""
    outbox = tmp_path / "outbox.sqlite"
    shutdown = 2.0
    config = fast_config(tiny_model_dir, [{"name": "cam", "path": str(clip)}],
                         sinks={**mqtt_down(tmp_path, outbox), "stdout": {"enabled": True, "format": "json"}},
                         service={"shutdown_timeout_s": shutdown, "metrics": {"enabled": True, "port": 0}})
    with fast_service(tmp_path, config, env={"STREAMPROC_TEST_CALL_S": "120"}) as svc:
        port = svc.metrics_port()
        from tests.support.service import healthz

        assert wait_until(lambda: any(b is not None for b in healthz(port)[1]["workers"]["busy_s"]), 30)
        started = time.monotonic()
        svc.send(signal.SIGTERM)
        rc = svc.wait(shutdown + 10)
        took = time.monotonic() - started
        log = svc.log()
    assert rc == 0, log
    assert took <= shutdown + 2.0, (took, log)
    assert "closed while a call runs" not in log
    assert "aborting the model call" in log
    with sqlite3.connect(str(outbox)) as db:  # intact, and it kept what the run said
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] > 0


def test_1_a_call_stuck_past_stuck_after_s_is_aborted_and_the_worker_goes_on(tmp_path, tiny_model_dir, clip):
    config = fast_config(tiny_model_dir, [{"name": "cam", "path": str(clip)}],
                         service={"stuck_after_s": 1.0})
    outcome = run_cli(["run", str(write_yaml(tmp_path / "s.yaml", config))], env={"STREAMPROC_TEST_CALL_S": "60"},
                      timeout_s=40)
    assert outcome.rc == 0, outcome.describe()
    assert outcome.stderr.count("service.stuck_after_s is 1); aborting it") == 2, outcome.describe()  # both segments
    assert "Traceback" not in outcome.stderr


# 2 -------------------------------------------------------------------------------------------


def test_2_a_full_outbox_disk_keeps_events_until_space_returns(tmp_path, tiny_model_dir, long_clip):
    with small_filesystem(tmp_path / "fs", "1m") as fs:
        outbox = fs / "outbox.sqlite"
        from streamproc.sinks.outbox import Outbox

        Outbox(outbox).close()
        filler = fill(fs)
        os.truncate(filler, max(0, filler.stat().st_size - 40 * 1024))  # room to open it, not to write
        config = fast_config(tiny_model_dir, [{"name": "cam", "path": str(long_clip), "realtime": True}],
                             sinks=mqtt_down(tmp_path, outbox))
        with fast_service(tmp_path, config) as svc:
            line = svc.wait_log(r"outbox (\S+): cannot write, the disk is full \(.*; (\d+ \S+ free)\)", 30)
            assert line.group(1) == str(outbox)
            filler.unlink()  # space returns while the run goes on
            rc = svc.wait(60)
            log = svc.log()
        assert rc == 0, log
        assert "space is back" in log and " lost" not in log and "cannot rollback" not in log
        with Outbox(outbox) as box:
            rows = box.peek(limit=1000)
            captions = [json.loads(m.payload) for m in rows if m.topic.endswith("/captions")]
            assert [c["segment"]["index"] for c in captions] == [0, 1, 2, 3], log  # all 8 s, in order
            assert box.dropped["disk_full"] == 0


def test_2_events_that_cannot_be_kept_are_counted_and_the_exit_code_says_so(tmp_path, tiny_model_dir, clip):
    with small_filesystem(tmp_path / "fs", "1m") as fs:
        outbox = fs / "outbox.sqlite"
        from streamproc.sinks.outbox import Outbox

        Outbox(outbox).close()
        filler = fill(fs)
        os.truncate(filler, max(0, filler.stat().st_size - 40 * 1024))
        config = fast_config(tiny_model_dir, [{"name": "cam", "path": str(clip), "realtime": True}],
                             sinks={**mqtt_down(tmp_path, outbox), "stdout": {"enabled": True, "format": "json"}},
                             service={"stats_interval_s": 0.3})
        outcome = run_cli(["run", str(write_yaml(tmp_path / "s.yaml", config))])
    assert outcome.rc == 6, outcome.describe()
    assert "messages kept in memory are lost" in outcome.stderr
    assert "cannot rollback" not in outcome.stderr and "Traceback" not in outcome.stderr
    assert len(outcome.error_lines) == 1, outcome.describe()
    stats = [e["stats"] for e in outcome.events() if e["type"] == "stats"]
    assert stats and any(s["sinks"]["mqtt"]["outbox"]["in_memory"] > 0 for s in stats), outcome.describe()


# 3 -------------------------------------------------------------------------------------------


def test_3_camera_passwords_with_url_characters_never_leave_the_process(tmp_path, tiny_model_dir, clip, broker, subscribe):
    secrets = ["Pw1@Sx2/Wy3:Rz4", password(7), "Ab5/Cd6@Ef7"]  # FFmpeg takes them unencoded
    sources = [
        {"name": f"cam{i}", "url": f"rtsp://admin:{secret}@127.0.0.1:{closed_port()}/stream",
         "open_timeout_s": 2.0, "read_timeout_s": 2.0, "reconnect": {"initial_delay_s": 0.1, "max_attempts": 2}}
        for i, secret in enumerate(secrets)
    ]
    outbox = tmp_path / "outbox.sqlite"
    sinks = mqtt_down(tmp_path, outbox, port=broker.port)
    sinks["mqtt"]["topic_prefix"] = "sp"
    sub = subscribe(broker.port, ["sp/#"])
    config = fast_config(tiny_model_dir, [*sources, {"name": "good", "path": str(clip)}],
                         sinks={**sinks, "stdout": {"enabled": True, "format": "json"}})
    outcome = run_cli(["-vv", "run", str(write_yaml(tmp_path / "s.yaml", config))])
    assert sub.wait_for(lambda: len([m for m in sub.snapshot() if m.topic.endswith("/status")]) >= 4)
    payloads = b"\n".join(m.payload for m in sub.snapshot())
    assert outcome.rc == 0, outcome.describe()
    assert_no_secret(secrets, outcome.stdout, outcome.stderr, payloads, outbox_bytes(outbox))
    assert b"rtsp://admin:***@127.0.0.1" in payloads  # the status events name the camera, masked
    # a mistyped scheme is refused with the config, before anything runs; the password stays in
    typo = fast_config(tiny_model_dir, [{"name": "typo", "url": "rstp://admin:Ty8@Po9/Pw0@127.0.0.1/stream"},
                                        {"name": "good", "path": str(clip)}])
    outcome = run_cli(["-vv", "run", str(write_yaml(tmp_path / "typo.yaml", typo))])
    assert outcome.rc == 2 and "unknown URL scheme 'rstp://'" in outcome.stderr, outcome.describe()
    assert "no such file" not in outcome.stderr
    assert_no_secret(["Ty8@Po9/Pw0"], outcome.stdout, outcome.stderr)


# 4 -------------------------------------------------------------------------------------------


def test_4_exit_codes_tell_the_truth(tmp_path, tiny_model_dir):
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"not a video " * 100)
    every_source_fails = fast_config(tiny_model_dir, [{"name": "a", "path": str(tmp_path / "a.mp4")},
                                                      {"name": "b", "path": str(tmp_path / "b.mp4")}])
    outcome = run_cli(["run", str(write_yaml(tmp_path / "files.yaml", every_source_fails))])
    assert outcome.rc == 3, outcome.describe()
    # what the config itself says is wrong is a config error, found before the model loads
    missing = fast_config(tiny_model_dir, [{"name": "a", "path": str(tmp_path / "gone.mp4")}])
    outcome = run_cli(["run", str(write_yaml(tmp_path / "gone.yaml", missing))])
    assert outcome.rc == 2 and "sources[0].path: " in outcome.stderr, outcome.describe()
    unknown = fast_config(tiny_model_dir, [{"name": "a", "url": "foo://u:pw@host/x"}])
    outcome = run_cli(["run", str(write_yaml(tmp_path / "foo.yaml", unknown))])
    assert outcome.rc == 2 and "unknown URL scheme 'foo://'" in outcome.stderr, outcome.describe()


# 5 -------------------------------------------------------------------------------------------


def test_5_an_outbox_folder_that_cannot_be_made_and_a_busy_port_are_one_line(tmp_path, tiny_model_dir, clip):
    (tmp_path / "a-file").write_text("x")
    config = fast_config(tiny_model_dir, [{"name": "a", "path": str(clip)}],
                         sinks=mqtt_down(tmp_path, tmp_path / "a-file" / "sub" / "outbox.sqlite"))
    outcome = run_cli(["run", str(write_yaml(tmp_path / "o.yaml", config))])
    assert outcome.rc == 2 and "Traceback" not in outcome.stderr, outcome.describe()  # found by the config check
    [line] = outcome.error_lines
    assert line.startswith(f"streamproc: error: {tmp_path / 'o.yaml'}:") and line.endswith(
        f": sinks.outbox.path: {tmp_path / 'a-file'} is a file, not a folder"), line
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        config = fast_config(tiny_model_dir, [{"name": "a", "path": str(clip)}],
                             service={"metrics": {"enabled": True, "host": "127.0.0.1", "port": port}})
        outcome = run_cli(["run", str(write_yaml(tmp_path / "p.yaml", config))])
    assert outcome.rc == 2 and "Traceback" not in outcome.stderr, outcome.describe()
    assert len(outcome.error_lines) == 1 and f"127.0.0.1:{port}" in outcome.error_lines[0]
    assert "already in use" in outcome.error_lines[0]


# 6 -------------------------------------------------------------------------------------------


def test_6_messages_name_the_real_problem(tmp_path, tiny_model_dir, clip):
    good = [{"name": "a", "path": str(clip)}]
    ca = tmp_path / "certs" / "ca.pem"
    sinks = mqtt_down(tmp_path, tmp_path / "o.sqlite", tls={"enabled": True, "ca_file": str(ca)})
    outcome = run_cli(["run", str(write_yaml(tmp_path / "tls.yaml", fast_config(tiny_model_dir, good, sinks=sinks)))])
    assert outcome.rc == 2, outcome.describe()  # found by the config check, before the model
    [line] = outcome.error_lines
    assert line.endswith(f": sinks.mqtt.tls.ca_file: {ca}: no such file"), line
    assert "could not take a status" not in outcome.stderr  # the sink never started: it is told nothing

    sinks = mqtt_down(tmp_path, tmp_path / "o2.sqlite", host="broker.invalid")
    outcome = run_cli(["run", str(write_yaml(tmp_path / "dns.yaml", fast_config(tiny_model_dir, good, sinks=sinks)))])
    assert "cannot resolve the MQTT broker host 'broker.invalid'" in outcome.stderr, outcome.describe()
    camera = [{"name": "cam", "url": "rtsp://u:pw@camera.invalid/s", "reconnect": {"max_attempts": 1}}]
    outcome = run_cli(["run", str(write_yaml(tmp_path / "cam.yaml", fast_config(tiny_model_dir, camera)))])
    assert "cannot resolve the host name 'camera.invalid'" in outcome.stderr, outcome.describe()
    assert "Input/output error" not in outcome.stderr and "Invalid argument" not in outcome.stderr

    long_prompt = fast_config(tiny_model_dir, good, prompt={"user": "describe the scene " * 100})
    outcome = run_cli(["run", str(write_yaml(tmp_path / "prompt.yaml", long_prompt))])
    assert outcome.rc == 4, outcome.describe()
    assert "the prompt does not fit" in outcome.stderr and "28x28" not in outcome.stderr


# 7 -------------------------------------------------------------------------------------------


class CountingServer:
    """A TCP server that counts connections and closes each at once (a camera that drops)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_7_max_attempts_2_means_two_attempts_then_the_source_gives_up(tmp_path, tiny_model_dir, clip):
    server = CountingServer()
    try:
        camera = {"name": "cam", "url": f"rtsp://127.0.0.1:{server.port}/s", "open_timeout_s": 2.0, "read_timeout_s": 2.0,
                  "reconnect": {"initial_delay_s": 0.2, "max_delay_s": 0.5, "max_attempts": 2}}
        config = fast_config(tiny_model_dir, [camera, {"name": "good", "path": str(clip)}],
                             sinks={"stdout": {"enabled": True, "format": "json"}})
        outcome = run_cli(["run", str(write_yaml(tmp_path / "s.yaml", config))], timeout_s=30)  # before: forever
        time.sleep(1.0)  # no late attempt either
        assert server.connections == 2, outcome.describe()
    finally:
        server.close()
    assert outcome.rc == 0, outcome.describe()  # the good file was described; the camera gave up
    assert len(outcome.error_lines) == 1 and "gave up after 2 attempts" in outcome.error_lines[0]
    assert outcome.captions_of("good")


# 8 -------------------------------------------------------------------------------------------


def test_8_a_png_is_refused_as_a_video_source(tmp_path, tiny_model_dir):
    import av
    import numpy as np

    still = tmp_path / "door.png"
    frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
    with av.open(str(still), "w", format="image2") as out:
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 32, 32, "rgb24"
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    config = fast_config(tiny_model_dir, [{"name": "door", "path": str(still)}])
    outcome = run_cli(["run", str(write_yaml(tmp_path / "s.yaml", config))])
    assert outcome.rc == 3, outcome.describe()
    assert len(outcome.error_lines) == 1 and "is a still image (PNG), not a video" in outcome.error_lines[0]
