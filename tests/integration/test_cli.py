"""The real `streamproc` command: one-line errors for bad input (never a traceback), the caption
command end to end and deterministic, config errors with file and line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamproc.samples import write_audio_only

pytestmark = [pytest.mark.integration, pytest.mark.cpu_bound]


def streamproc(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "streamproc", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("streamproc: error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, make_video) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    good = make_video(".mp4", duration_s=4, fps=25, width=224, height=224)
    empty = folder / "empty.mp4"
    empty.touch()
    text = folder / "notes.mkv"
    text.write_text("not a video\n" * 50)
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    noise = folder / "noise.ts"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    return {
        "missing": folder / "missing.mp4",
        "empty": empty,
        "text": text,
        "truncated": truncated,
        "noise": noise,
        "audio": write_audio_only(folder / "tone.m4a"),
    }


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "no such file"),
        ("empty", "the file is empty (0 bytes)"),
        ("text", "not a readable video file"),
        ("truncated", "not a readable video file"),
        ("noise", "not a readable video file"),
        ("audio", "has no video track"),
    ],
)
def test_bad_files_give_one_line_errors(bad_inputs, tiny_model_dir, tmp_path, kind, message):
    proc = streamproc("caption", str(bad_inputs[kind]), "--model", str(tiny_model_dir), "--out", str(tmp_path),
                      "--max-pixels", "112x112", "--max-new-tokens", "4", "--no-progress")
    assert proc.returncode == 1
    assert_one_line_error(proc, message)


def test_caption_command_is_deterministic(make_video, tiny_model_dir, tmp_path):
    video = make_video(".mp4", duration_s=20, fps=30, width=320, height=240, seed=4)
    outputs = []
    for run in ("first", "second"):
        out = tmp_path / run
        proc = streamproc("caption", str(video), "--model", str(tiny_model_dir), "--out", str(out), "--max-pixels",
                          "112x224", "--seq-length", "160", "--max-new-tokens", "8", "--no-progress")
        assert proc.returncode == 0, proc.stderr
        assert "1 captioned" in proc.stdout
        events = [json.loads(line) for line in (out / f"{video.stem}.jsonl").read_text().splitlines()]
        outputs.append([(e["segment"]["start"], e["segment"]["end"], e["text"]) for e in events if e["type"] == "caption"])
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) >= 2 and outputs[0][-1][1] == pytest.approx(20.0)


def test_config_errors_name_file_and_line(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("sources:\n  - name: cam\n    url: rtsp://127.0.0.1/x\n    prompts: hi\n")
    proc = streamproc("run", str(config))
    assert proc.returncode == 2
    assert_one_line_error(proc, f"{config}:4: sources[0].prompts: unknown key")


def test_missing_secret_is_named_not_leaked(tmp_path):
    config = tmp_path / "secret.yaml"
    config.write_text("sources:\n  - name: cam\n    url: rtsp://admin:${CAM_PASSWORD_NOT_SET}@127.0.0.1/x\n")
    proc = streamproc("run", str(config))
    assert_one_line_error(proc, "environment variable CAM_PASSWORD_NOT_SET is not set")


def test_help_everywhere_has_examples():
    for command in ("run", "caption", "chat", "demo", "bench", "doctor", "make-tiny-model"):
        proc = streamproc(command, "--help")
        assert proc.returncode == 0, command
        assert "examples:" in proc.stdout, command
    proc = streamproc("--help")
    assert "exit codes" in proc.stdout
