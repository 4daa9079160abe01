"""A test backend plug-in with no torch: the tiny model's real input builder, a canned answer.

`FastBackend` builds nothing heavy: `inputs` is the real `InputBuilder` of the model folder (so
planning, segmenting and the model inputs are the product's own), and `describe` answers at once
with a fixed caption, or after `STREAMPROC_TEST_CALL_S` seconds (and it loads in
`STREAMPROC_TEST_LOAD_S` seconds) (a long model call that
`abort()` ends early with `Aborted`, like the native engine's abort flag). Like the native engine,
it must never be closed while a call runs inside it: `close()` then kills the process with
SIGSEGV's status (139), which is what closing an engine under a running call did.

Run as a program it registers itself in place of `hf` and runs the streamproc command line, so
the bad-input tests start `streamproc run` in a fraction of a second per case:

    python -m tests.support.fast_backend run CONFIG.yaml
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Any, Optional

from streamproc.backends.base import GenerationParams, Result, Timings

CALL_S_ENV = "STREAMPROC_TEST_CALL_S"
LOAD_S_ENV = "STREAMPROC_TEST_LOAD_S"  # seconds each backend takes to load (a large model's load)
ANSWER = "a person walks past the door"


class FastBackend:
    name = "fast"

    def __init__(self, config: Any, **kwargs: Any):
        import time

        from streamproc.qwen import InputBuilder

        time.sleep(float(os.environ.get(LOAD_S_ENV, "0")))  # like a native load: nothing interrupts it
        self.model_id = str(config.model)
        self._inputs = InputBuilder.from_pretrained(config.model)
        self.call_s = float(os.environ.get(CALL_S_ENV, "0"))
        self._abort = threading.Event()
        self._inside = 0
        self.calls = 0

    @property
    def seq_length(self) -> Optional[int]:
        return None

    @property
    def inputs(self) -> Any:
        return self._inputs

    def describe(self, inputs: Any, params: GenerationParams) -> Result:
        from streamproc.errors import Aborted

        self.calls += 1
        self._abort.clear()
        self._inside += 1
        try:
            if self.call_s and self._abort.wait(self.call_s):
                raise Aborted(f"{self.model_id}: the request was aborted")
        finally:
            self._inside -= 1
        text = ANSWER if "JSON" not in str(getattr(inputs, "prompt", "")) else '{"answer": "no"}'
        return Result(text, int(inputs.total_tokens), int(inputs.visual_tokens), 6, self.model_id,
                      timings=Timings(total_s=0.001, decode_s=0.001))

    def follow_up(self, *args: Any, **kwargs: Any) -> Result:
        return Result('{"answer": "no", "reason": "nothing"}', 1, 0, 6, self.model_id, timings=Timings())

    def abort(self) -> None:
        self._abort.set()

    def close(self) -> None:
        if self._inside:
            sys.stderr.write("fast backend: closed while a call runs inside it\n")
            sys.stderr.flush()
            os._exit(139)


def main(argv: Optional[list[str]] = None) -> int:
    from streamproc.backends.base import register_backend
    from streamproc.cli import main as cli_main

    register_backend("hf", FastBackend)
    return cli_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
