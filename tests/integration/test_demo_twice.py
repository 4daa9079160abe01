"""Two `streamproc demo`s at once, on one broker, by one user: neither refuses the other (no
fixed outbox in /tmp, no shared client id), both describe their video, and when they are done
the broker keeps nothing of either (each clears its own retained topics)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto, mosquitto_unavailable_reason
from tests.support.prerequisites import unavailable

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_demos_at_once(tmp_path, subscribe):
    pytest.importorskip("torch")
    reason = mosquitto_unavailable_reason()
    if reason:
        unavailable(reason)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    with Mosquitto(tmp_path) as broker:
        command = [sys.executable, "-m", "streamproc", "demo", "--backend", "hf", "--duration", "4",
                   "--broker", f"127.0.0.1:{broker.port}"]
        runs = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        outputs = [run.communicate(timeout=400) for run in runs]
        for run, (out, err) in zip(runs, outputs):
            assert run.returncode == 0, err[-3000:]
            assert "in use by another streamproc process" not in err
            assert "sample/captions: [0-4 s]" in out, out[-2000:]
        late = subscribe(broker.port, ["streamproc-demo/#"])
        time.sleep(1.0)
        assert [m.topic for m in late.snapshot() if m.payload] == []
    cache = tmp_path / "cache" / "streamproc" / "demo"
    assert sorted(p.name for p in cache.iterdir()) == ["sample-4s.mp4", "tiny-qwen2.5-vl"]  # no partial left
    mine = tuple(f"streamproc-demo-{run.pid}-" for run in runs)  # each run's private folder, removed at its end
    assert not [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(mine)]
    assert not any(tmp_path.glob("streamproc-*"))  # nothing in the working directory either
