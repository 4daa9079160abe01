"""`streamproc convert`'s failures are one line with what to do: not a Qwen2.5-VL checkpoint, no
Python 3.10 for the converter, not enough disk, a converter failure. No converter is run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamproc.cli import main
from streamproc.convert import env
from streamproc.convert.env import ConverterError, ensure_converter
from streamproc.convert.run import UnsupportedCheckpoint, check_checkpoint, explain_failure


def checkpoint(tmp_path: Path, model_type: str = "qwen2_5_vl", weights: bool = True) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    if weights:
        (folder / "model.safetensors").write_bytes(b"x")
    return folder


def test_unsupported_checkpoints(tmp_path, capsys):
    with pytest.raises(UnsupportedCheckpoint, match="qwen2 checkpoint; streamproc convert takes Qwen2.5-VL"):
        check_checkpoint(checkpoint(tmp_path / "a", "qwen2"))
    with pytest.raises(UnsupportedCheckpoint, match="no \\*.safetensors"):
        check_checkpoint(checkpoint(tmp_path / "b", weights=False))
    code = main(["convert", str(tmp_path / "nothing"), "--chip", "bm1684x", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 4 and len(err) == 1 and "has no config.json" in err[0]


def test_no_python_310(tmp_path, monkeypatch):
    monkeypatch.setattr(env, "find_python310", lambda: None)
    with pytest.raises(ConverterError, match="needs Python 3.10.*pyenv install 3.10.*PYTHON310"):
        ensure_converter(cache=tmp_path / "cache")


def test_not_enough_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(env, "find_python310", lambda: "/usr/bin/python3.10")
    monkeypatch.setattr(env, "free_bytes", lambda path: 2 * 2**30)
    with pytest.raises(ConverterError, match=r"not enough disk space .* 2.0 GiB free, about 10 GiB needed"):
        ensure_converter(cache=tmp_path / "cache")


def test_converter_failures_are_explained(tmp_path):
    log = tmp_path / "convert.log"
    error = explain_failure(["Traceback ...", "KeyError: 'model.layers.0.self_attn.q_proj.weight'"], log, "the conversion")
    assert isinstance(error, UnsupportedCheckpoint) and "does not take this checkpoint" in str(error)
    assert "disk filled up" in str(explain_failure(["OSError: [Errno 28] No space left on device"], log, "the conversion"))
    error = explain_failure(["step 3", "RuntimeError: lowering failed"], log, "the conversion")
    assert str(error) == f"the conversion failed: RuntimeError: lowering failed (log: {log})"
