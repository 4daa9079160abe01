"""Shared fixtures: generated test videos and the tiny model (made once per run, shared by the
pytest-xdist workers: tests/support/shared.py) and small helpers."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from streamproc.samples import write_video
from tests.support.shared import build_once, run_dir


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """Generated videos, shared by every worker of the run: treat as read-only."""
    path = run_dir(tmp_path_factory) / "media"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def make_video(media_dir):
    """make_video(name_suffix='.mp4', **write_video kwargs) -> Path, generated once per run (the
    name is a hash of the arguments)."""

    def make(suffix: str = ".mp4", **kwargs) -> Path:
        key = hashlib.sha1(json.dumps(kwargs, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return build_once(media_dir / f"video-{key}{suffix}", lambda part: write_video(part, **kwargs))

    return make


# -- the tiny Qwen2.5-VL (streamproc.qwen.tiny), made once per session ------------------------


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A seeded tiny Qwen2.5-VL checkpoint (numpy + tokenizers only; no torch needed), made once
    per run and shared by the workers: treat as read-only."""
    from streamproc.qwen.tiny import make_tiny_model

    return build_once(run_dir(tmp_path_factory) / "tiny-qwen" / "model", make_tiny_model)


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


# -- CPU priority: throughput tests yield to timing tests ------------------------------------

CPU_BOUND_NICE = 10


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test marked cpu_bound (the simulator, long decodes, the converter) runs at niceness
    CPU_BOUND_NICE, with whatever it starts (threads, subprocesses), fixtures made for it
    included. On 2 cores under xdist such tests keep the load above 15; at a lower priority they
    still use every idle cycle, and the tests beside them that time a lease, a shutdown or a
    service running at k x camera speed get the CPU when they wake (CI saw those fail at load 20)."""
    niced = item.get_closest_marker("cpu_bound") is not None and _nice(CPU_BOUND_NICE)
    try:
        yield
    finally:
        if niced:
            _nice(0)


def _nice(value: int) -> bool:
    """Set this thread's niceness (Linux: the calling thread's; threads and processes it starts
    inherit it); False where that is not allowed (lowering it again needs root)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, value)
        return True
    except (AttributeError, OSError):
        return False


# -- pytest-xdist (`make test`: -n 4 --dist loadfile; tests/support/xdist_lanes.py) ------------


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from tests.support.xdist_lanes import LaneScheduling

    return LaneScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a plain run keeps the files' own order
        from tests.support.xdist_lanes import longest_first

        items[:] = longest_first(items)
