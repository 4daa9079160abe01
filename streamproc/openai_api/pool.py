"""The engines behind a bounded queue, and one request's run on an engine's worker thread.

One backend serves one request at a time (a TPU engine has one KV cache and is not thread-safe),
so the pool hands each request a whole backend. Requests wait in a bounded queue; when it is full
the next one gets 429 with Retry-After, which OpenAI clients honour. The model runs on a thread
of the pool's own executor, never on the event loop: the native engine releases the GIL, so the
loop keeps serving other requests (and streaming tokens) meanwhile.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..backends.base import Backend
from .errors import ApiError
from .request import ChatJob
from .text import Cancelled, StopMatched, TextStream, cut_at_stop

log = logging.getLogger(__name__)

Emit = Callable[[str], None]


@dataclass
class Outcome:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    first_token_s: float  # from the start of the model call to its first token
    model_s: float  # the whole model call


def run_job(backend: Backend, job: ChatJob, emit: Optional[Emit], cancelled: Callable[[], bool]) -> Outcome:
    """One request on `backend`, on the calling (worker) thread. `emit` gets text deltas as they
    are generated (streaming); stop strings and a client that went away end generation early."""
    builder = backend.inputs
    started = time.perf_counter()
    first: list[float] = []
    text = TextStream(builder, job.stop)
    callback_ok = backend.capabilities.streaming  # declared: describe takes on_token
    needs_callback = bool(emit or job.stop)

    def on_token(token: int) -> None:
        if not first:
            first.append(time.perf_counter() - started)
        if cancelled():
            raise Cancelled()
        try:
            delta = text.push(token)
        except StopMatched as matched:
            if emit and matched.args[0]:
                emit(matched.args[0])
            raise
        if emit and delta:
            emit(delta)

    prompt_tokens = job.inputs.total_tokens
    try:
        if needs_callback and callback_ok:
            result = backend.describe(job.inputs, job.params, on_token=on_token)
        else:
            result = backend.describe(job.inputs, job.params)
    except StopMatched:
        elapsed = time.perf_counter() - started
        return Outcome(text.stopped_at or "", prompt_tokens, len(text.tokens), "stop", first[0], elapsed)
    elapsed = time.perf_counter() - started
    final, stopped = cut_at_stop(result.text, job.stop)
    if emit:
        rest = final if not callback_ok else text.finish(final)
        if rest:
            emit(rest)
    first_s = first[0] if first else result.timings.first_token_s
    finish = "stop" if stopped else result.finish_reason
    return Outcome(final, int(result.prompt_tokens), int(result.generated_tokens), finish, first_s, elapsed)


class EnginePool:
    """Backends handed out one request at a time, with at most `queue_size` requests waiting."""

    def __init__(self, backends: list[Backend], queue_size: int):
        if not backends:
            raise ValueError("the pool needs at least one backend")
        self.backends = list(backends)
        self.queue_size = queue_size
        self.waiting = 0
        self.busy = 0
        self._idle: Optional[asyncio.Queue] = None
        self._executor = ThreadPoolExecutor(max_workers=len(backends), thread_name_prefix="serve-engine")
        self._recent_s = 1.0  # a moving average of request time, for Retry-After

    def _queue(self) -> asyncio.Queue:
        if self._idle is None:  # made on the event loop's thread, at the first request
            self._idle = asyncio.Queue()
            for backend in self.backends:
                self._idle.put_nowait(backend)
        return self._idle

    def retry_after_s(self) -> int:
        rounds = (self.waiting + len(self.backends)) / len(self.backends)
        return max(1, math.ceil(rounds * self._recent_s))

    async def acquire(self) -> Backend:
        idle = self._queue()
        if idle.empty() and self.waiting >= self.queue_size:
            seconds = self.retry_after_s()
            raise ApiError(
                429,
                f"the server is busy: {self.busy} requests running and {self.waiting} waiting; retry in {seconds} s",
                type="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": str(seconds)},
            )
        self.waiting += 1
        try:
            backend = await idle.get()
        finally:
            self.waiting -= 1
        self.busy += 1
        return backend

    def release(self, backend: Backend, seconds: Optional[float] = None) -> None:
        self.busy -= 1
        if seconds is not None:
            self._recent_s = 0.8 * self._recent_s + 0.2 * seconds
        self._queue().put_nowait(backend)

    def run(self, fn: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def release_when_done(self, backend: Backend, future: "asyncio.Future[Any]", started: float) -> None:
        """Give the backend back once its call has ended (a native call cannot be interrupted,
        so a request whose client left keeps its engine until the call returns)."""
        def done(finished: "asyncio.Future[Any]") -> None:
            if not finished.cancelled():
                finished.exception()  # retrieved here, so a client that left logs no "never retrieved"
            self.release(backend, time.perf_counter() - started)

        if future.done():
            done(future)
        else:
            future.add_done_callback(done)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for backend in self.backends:
            try:
                backend.close()
            except Exception as error:  # closing the others matters more than this one
                log.warning("closing a backend failed: %s", error)
