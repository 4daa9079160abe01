"""A test backend plug-in for cluster tests: no model, a scene the test controls.

The text is "a person at the door" while the file $STREAMPROC_TEST_SCENE exists and "an empty
yard" otherwise, so a test can raise and clear a keyword rule on every camera at a moment it
chooses, whichever box owns the camera then. Inputs are still built by the real model-input
builder of the tiny model (the pipeline plans segments with it). It takes the place of `hf`
(the backend type the config validates), like tests/support/slow_backend.py:

    STREAMPROC_TEST_SCENE=/tmp/scene python -m tests.cluster.fast_backend run CONFIG.yaml
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from streamproc.backends.base import GenerationParams, Result, Timings
from streamproc.backends.base import BackendCapabilities
from streamproc.backends.hf import HfBackend

SCENE_ENV = "STREAMPROC_TEST_SCENE"
DELAY_ENV = "STREAMPROC_TEST_DELAY_S"  # seconds per model call (default 0.02)
PERSON, EMPTY = "a person at the door", "an empty yard"


class FastBackend:
    name = "fast-test"

    # What the model takes and its input builder, from the config's files (as the hf backend
    # states them), and what this stand-in can do.
    geometry = staticmethod(HfBackend.geometry)
    input_builder = staticmethod(HfBackend.input_builder)
    capabilities = BackendCapabilities(family=None, seq_length=None, keeps_history=False, follow_up=True,
                                       sampling=True, streaming=False)

    def __init__(self, config: Any, **kwargs: Any):
        from streamproc.qwen import InputBuilder

        self.model_id = str(config.model)
        self._inputs = InputBuilder.from_pretrained(Path(config.model))
        self.scene = Path(os.environ.get(SCENE_ENV, "/nonexistent/scene"))
        self.delay = float(os.environ.get(DELAY_ENV, "0.02"))

    @property
    def seq_length(self) -> Optional[int]:
        return None

    @property
    def inputs(self) -> Any:
        return self._inputs

    def describe(self, inputs: Any, params: GenerationParams) -> Result:
        started = time.perf_counter()
        time.sleep(self.delay)  # a model call takes some time
        text = PERSON if self.scene.exists() else EMPTY
        total = time.perf_counter() - started
        return Result(text, inputs.total_tokens, inputs.visual_tokens, 4, self.model_id, timings=Timings(total_s=total, decode_s=total))

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def main(argv: Optional[list[str]] = None) -> int:
    from streamproc.backends.base import register_backend
    from streamproc.cli import main as cli_main

    register_backend("hf", FastBackend)
    return cli_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
