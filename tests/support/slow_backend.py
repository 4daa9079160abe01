"""A test backend plug-in: the transformers backend on the tiny model, made slower than real time.

`SlowBackend` runs the real `hf` backend and then sleeps until `factor` x the segment's media
duration has passed, so a factor of 3 describes 2 s of video in 6 s (a model that cannot keep up
with a live camera) and 0.1 paces a long file so that it lasts through a test.

Run as a program it registers itself in place of `hf` (the config's backend section is checked
against the known backend types, so the plug-in takes that name) and then runs the streamproc
command line, so a test can measure a real `streamproc run` in its own process:

    STREAMPROC_TEST_SLOWDOWN=3 python -m tests.support.slow_backend run CONFIG.yaml
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Optional

from streamproc.backends.base import GenerationParams, Result
from streamproc.backends.base import BackendCapabilities
from streamproc.backends.hf import HfBackend

FACTOR_ENV = "STREAMPROC_TEST_SLOWDOWN"


def media_seconds(inputs: Any) -> float:
    """Seconds of video in the model inputs (temporal grids x seconds per grid)."""
    return float(
        sum(block.grid_thw[0] * (block.second_per_grid or 0.0) for block in inputs.blocks if block.kind == "video")
    )


class SlowBackend:
    name = "slow-hf"

    # What the model takes and its input builder, from the config's files (as the hf backend
    # states them), and what this stand-in can do.
    geometry = staticmethod(HfBackend.geometry)
    input_builder = staticmethod(HfBackend.input_builder)
    capabilities = BackendCapabilities(family=None, seq_length=None, keeps_history=False, follow_up=True,
                                       sampling=True, streaming=False)

    def __init__(self, config: Any, factor: Optional[float] = None, **kwargs: Any):
        from streamproc.backends.hf import HfBackend

        self.factor = float(os.environ.get(FACTOR_ENV, "3")) if factor is None else float(factor)
        self.inner = HfBackend(config, **kwargs)
        self.model_id = self.inner.model_id
        self.calls = 0
        self._aborted = threading.Event()

    @property
    def seq_length(self) -> Optional[int]:
        return self.inner.seq_length

    @property
    def inputs(self) -> Any:
        return self.inner.inputs

    def describe(self, inputs: Any, params: GenerationParams) -> Result:
        started = time.monotonic()
        result = self.inner.describe(inputs, params)
        self.calls += 1
        left = self.factor * media_seconds(inputs) - (time.monotonic() - started)
        self._aborted.clear()
        if left > 0 and self._aborted.wait(left):
            from streamproc.errors import Aborted

            raise Aborted("slow backend: the request was aborted")
        return result

    def abort(self) -> None:
        self.inner.abort()
        self._aborted.set()

    def close(self) -> None:
        self.inner.close()


def main(argv: Optional[list[str]] = None) -> int:
    from streamproc.backends.base import register_backend
    from streamproc.cli import main as cli_main

    register_backend("hf", SlowBackend)
    return cli_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
