"""Model workers under the supervision rule: a backend that keeps failing is restarted within a
budget, then the worker gives up and the run says so with exit code 5 (before: it restarted the
backend forever, with a fixed back-off and no budget)."""
from __future__ import annotations

import logging
from typing import Any

from streamproc.backends.base import GenerationParams
from streamproc.config import load_config
from streamproc.errors import BackendError
from streamproc.pipeline import supervisor as supervisor_module
from streamproc.app.lifecycle import run_until_done
from streamproc.app import App
from streamproc.supervise import Backoff
from tests.support.cli_runs import fast_config, write_yaml


class BrokenBackend:
    name = "broken"
    model_id = "broken"
    made = 0

    def __init__(self, builder):
        BrokenBackend.made += 1
        self._inputs = builder

    @property
    def seq_length(self):
        return None

    @property
    def inputs(self) -> Any:
        return self._inputs

    def describe(self, inputs: Any, params: GenerationParams):
        raise BackendError("the device fell over", retryable=False)

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_backend_that_keeps_failing_is_restarted_within_a_budget_then_the_run_exits_5(
    tmp_path, tiny_model_dir, tiny_builder, make_video, monkeypatch, caplog
):
    clip = make_video(duration_s=12.0, fps=5, width=64, height=48, gop=5)  # 6 segments
    config = load_config(write_yaml(tmp_path / "s.yaml", fast_config(tiny_model_dir, [{"name": "cam", "path": str(clip)}])))
    monkeypatch.setattr(supervisor_module, "RESTARTS_PER_WINDOW", 1)
    monkeypatch.setattr(supervisor_module, "Backoff", lambda *a, **k: Backoff(0.01, 0.02))
    BrokenBackend.made = 0
    pipeline = App(config, backend_factory=lambda: BrokenBackend(tiny_builder), plugins=[], serve_http=False)
    with caplog.at_level(logging.INFO, logger="streamproc"):
        code = run_until_done(pipeline, install_signals=False, poll_s=0.05)
    assert code == 5, caplog.text
    # three failures in a row restart the backend once (the budget); three more and the worker gives up
    assert BrokenBackend.made == 2, caplog.text
    assert "the worker gives up" in caplog.text
    assert "no model worker is left" in caplog.text
