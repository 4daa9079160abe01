"""A device id the box does not have (issue 26): one line naming the key and the devices the runtime
sees, exit 5, never libbmlib's abort (it asserts dev_id < max_dev_cnt and kills the process with
no output). The simulator has one device: 0."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.cli_runs import write_yaml

from .conftest import bmodel_path
from .support import REPO

pytestmark = [pytest.mark.slow, pytest.mark.cpu_bound]


def streamproc(args, runtime_dir, cwd, timeout=300):
    env = dict(os.environ, STREAMPROC_BMRT_DIR=runtime_dir, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "streamproc", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


def test_chat_device_id_one(runtime_dir, tiny_model_dir, tmp_path):
    proc = streamproc(["chat", "--bmodel", str(bmodel_path("dynamic_bf16_s256")), "--tokenizer", str(tiny_model_dir),
                       "--device-id", "1", "-p", "hi", "--max-new-tokens", "4"], runtime_dir, tmp_path)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode == 5, proc.stderr[-2000:]
    assert len(lines) == 1 and "--device-id" in lines[0] and "1" in lines[0] and "device 0" in lines[0], lines


def test_config_device_id(runtime_dir, tiny_model_dir, tmp_path, make_video):
    clip = make_video(duration_s=2.0, fps=5, width=112, height=112, gop=5)
    config = {
        "sources": [{"name": "cam", "path": str(clip)}],
        "backend": {"type": "tpu", "bmodel": str(bmodel_path("dynamic_bf16_s256")), "tokenizer": str(tiny_model_dir),
                    "runtime_dir": runtime_dir, "device_id": 3},
        "sinks": {"stdout": {"enabled": True}},
        "service": {"metrics": {"enabled": False}},
    }
    proc = streamproc(["run", str(write_yaml(tmp_path / "c.yaml", config))], runtime_dir, tmp_path)
    assert proc.returncode == 5, proc.stderr[-3000:]
    message = [line for line in proc.stderr.splitlines() if "device_id" in line]
    assert message and "backend.device_id" in message[-1] and "3" in message[-1] and "device 0" in message[-1]
    assert "Assertion" not in proc.stderr and "Aborted" not in proc.stderr
