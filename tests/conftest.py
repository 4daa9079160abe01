"""Shared fixtures: generated test videos (cached per session) and small helpers."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from streamproc.samples import write_video


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def make_video(media_dir):
    """make_video(name_suffix='.mp4', **write_video kwargs) -> Path, generated once per session."""

    def make(suffix: str = ".mp4", **kwargs) -> Path:
        key = hashlib.sha1(json.dumps(kwargs, sort_keys=True, default=str).encode()).hexdigest()[:12]
        path = media_dir / f"video-{key}{suffix}"
        if not path.exists():
            write_video(path, **kwargs)
        return path

    return make


# -- the tiny Qwen2.5-VL (streamproc.qwen.tiny), made once per session ------------------------


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A seeded tiny Qwen2.5-VL checkpoint (numpy + tokenizers only; no torch needed)."""
    from streamproc.qwen.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-qwen") / "model")


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory) -> Path:
    """A seeded tiny Qwen3-VL checkpoint (`make-tiny-model --family qwen3-vl`)."""
    from streamproc.qwen.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-qwen3") / "model", family="qwen3-vl")


@pytest.fixture(scope="session")
def tiny_qwen3_builder(tiny_qwen3_dir):
    from streamproc.qwen import InputBuilder

    return InputBuilder.from_pretrained(tiny_qwen3_dir)


@pytest.fixture(scope="session")
def tiny_builder(tiny_model_dir):
    from streamproc.qwen import InputBuilder

    return InputBuilder.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_hf_backend(tiny_model_dir):
    """The transformers backend over the tiny model on the CPU, float32 (tests marked hf)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from streamproc.backends.hf import HfBackend
    from streamproc.config.model import HfBackendConfig

    backend = HfBackend(HfBackendConfig(model=str(tiny_model_dir), device="cpu", dtype="float32"))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def tiny_processor(tiny_model_dir):
    """transformers' own Qwen2_5_VLProcessor for the tiny model (the parity reference)."""
    pytest.importorskip("transformers")
    import os
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoProcessor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoProcessor.from_pretrained(str(tiny_model_dir))


@pytest.fixture(autouse=True)
def _restore_logging():
    """CLI tests run streamproc's setup_logging in-process; undo it so caplog keeps working."""
    import logging

    root = logging.getLogger()
    ours = logging.getLogger("streamproc")
    saved = (list(root.handlers), root.level, ours.level, ours.propagate)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    ours.setLevel(saved[2])
    ours.propagate = saved[3]
