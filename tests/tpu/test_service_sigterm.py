"""SIGTERM to `streamproc run` with the TPU backend while a native call runs (issue 11, defect 1).

Before the engine's abort flag and the stop order (abort running calls, join the workers, then
close the engines), stop() closed the engine under the worker's native call: exit 139, once
"terminate called without an active exception". Now: exit 0 within shutdown_timeout_s + 2 s,
no crash, and the outbox intact. The call is long because the simulator takes ~0.5 s per decode
step (more on a loaded machine) and the answer may be up to 120 tokens.
"""
from __future__ import annotations

import signal
import socket
import sqlite3
import time

import pytest

from tests.support.cli_runs import write_yaml
from tests.support.service import ServiceProcess, healthz, wait_until
from tests.tpu.conftest import bmodel_path

pytestmark = [pytest.mark.slow]

SHUTDOWN_S = 3.0


def test_sigterm_during_a_long_native_call_exits_cleanly(tmp_path, runtime_dir, tiny_model_dir, make_video):
    bmodel = bmodel_path("dynamic_bf16_s256")
    clip = make_video(duration_s=4.0, fps=5, width=112, height=112, gop=5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    outbox = tmp_path / "outbox.sqlite"
    config = {
        "sources": [{"name": "cam", "path": str(clip)}],
        "sampling": {"fps": 1.0, "max_pixels": "112x112", "video_area_factor": 1.0},
        "segmenting": {"max_duration_s": 2, "answer_reserve": 120},
        "backend": {"type": "tpu", "bmodel": str(bmodel), "tokenizer": str(tiny_model_dir), "runtime_dir": runtime_dir},
        "generation": {"max_new_tokens": 120},
        "sinks": {
            "mqtt": {"host": "127.0.0.1", "port": closed, "reconnect_min_delay_s": 0.2, "reconnect_max_delay_s": 0.5},
            "outbox": {"path": str(outbox), "synchronous": "normal"},
        },
        "service": {"shutdown_timeout_s": SHUTDOWN_S, "metrics": {"enabled": True, "host": "127.0.0.1", "port": 0}},
    }
    path = write_yaml(tmp_path / "tpu.yaml", config)
    with ServiceProcess(["-m", "streamproc", "run", str(path)], tmp_path, env={"STREAMPROC_BMRT_DIR": runtime_dir}) as svc:
        port = svc.metrics_port(timeout_s=300)

        def in_a_call_for_2s():
            busy = healthz(port)[1]["workers"]["busy_s"]
            return any(b is not None and b >= 2.0 for b in busy)

        assert wait_until(in_a_call_for_2s, 300, 0.2), svc.log()[-3000:]
        started = time.monotonic()
        svc.send(signal.SIGTERM)
        rc = svc.wait(SHUTDOWN_S + 30)
        took = time.monotonic() - started
        log = svc.log()
    assert rc == 0, log[-4000:]
    assert took <= SHUTDOWN_S + 2.0, (took, log[-3000:])
    for crash in ("terminate called", "Segmentation fault", "core dumped", "Aborted (core"):
        assert crash not in log, log[-3000:]
    assert "aborting the model call" in log, log[-3000:]
    # The engine stops at its next net launch. On a loaded 2-core machine one simulated launch can
    # outlast the stop's budget (a prefill took ~6 s at load 26); then the service leaves without
    # closing that engine (it never closes an engine under a call) rather than hang or crash:
    # either way the exit is clean and in time, which is what is asserted above.
    if "did not stop" in log:
        assert "exiting without waiting for it" in log, log[-3000:]
    with sqlite3.connect(str(outbox)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        topics = [row[0] for row in db.execute("SELECT topic FROM outbox")]
    assert any(t.endswith("/cam/status") for t in topics), topics  # kept for the next run
