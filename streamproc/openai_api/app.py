"""The OpenAI-compatible HTTP API: Starlette routes for the one HTTP stack (streamproc/http).

    POST /v1/chat/completions   (stream: true -> server-sent events in OpenAI's chunk format)
    GET  /v1/models, /v1/models/{id}
    GET  /metrics  (Prometheus), /healthz

Keys, the Host check, the body limit and the cross-site rules are the middleware's; the 401 and
413 it answers are in OpenAI's error shape. Each chat request is parsed and its media decoded on
the decode pool's threads (limits.py), then waits for an engine (bounded queue, 429 when full) and
runs on the engine pool's worker thread. The event loop only moves bytes. Requests are logged
with counts and timings; message text only with `log_content`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Optional, Sequence

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..config.http import HttpConfig
from ..errors import StreamprocError
from ..http import PublicRoute, build_app
from .errors import ApiError, from_streamproc
from .limits import DecodePool, parse_json
from .media import MediaPolicy
from .metrics import ServeMetrics
from .pool import EnginePool, Outcome, run_job
from .request import ChatJob, ServedModel, parse_chat

log = logging.getLogger("streamproc.openai_api")

_DONE = object()


@dataclass
class ServeOptions:
    log_content: bool = False  # log the messages' text (never media bytes)
    media: MediaPolicy = MediaPolicy()
    decode_workers: int = 2  # threads that parse requests and decode their media
    decode_waiting: int = 8  # requests that may wait for them; more get 429


class ChatApi:
    def __init__(self, pool: EnginePool, served: ServedModel, options: ServeOptions):
        self.pool = pool
        self.served = served
        self.options = options
        self.builder = pool.backends[0].inputs
        self.metrics = ServeMetrics(pool)
        self.created = int(time.time())
        self.decoder = DecodePool(options.decode_workers, options.decode_waiting)

    def close(self) -> None:
        self.decoder.close()

    # -- routes -------------------------------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        started = time.perf_counter()
        info: dict[str, Any] = {"stream": False}
        status = 500
        try:
            body = parse_json(await request.body())  # the middleware refuses a body over the limit
            job = await self.decoder.run(parse_chat, body, self.served, self.builder, self.options.media)
            info.update(job.summary, stream=job.stream, id=job.id)
            if self.options.log_content:
                info["content"] = _message_text(body)
            backend = await self._acquire(started)
            if job.stream:
                status = 200
                return StreamingResponse(
                    self._stream(job, backend, started, info),  # the model starts now, not at the first read
                    media_type="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                )
            outcome = await self._complete(job, backend, started)
            info.update(_outcome_info(outcome))
            status = 200
            return JSONResponse(self._completion(job, outcome))
        except ClientDisconnect:  # gone before its request was read (or its body refused): no answer
            status, info["error"] = 499, "client_gone"
            return Response(status_code=499)
        except Exception as error:  # every failure becomes OpenAI's error JSON
            api_error = _api_error(error)
            status = api_error.status
            info["error"] = api_error.code or api_error.type
            return JSONResponse(api_error.body(), api_error.status, headers=api_error.headers)
        finally:
            self.metrics.requests.labels("chat.completions", str(status)).inc()
            if not info.get("stream") or status != 200:  # a stream logs when it ends
                self._log(status, info, started)

    async def models(self, request: Request) -> Response:
        self.metrics.requests.labels("models", "200").inc()
        return JSONResponse({"object": "list", "data": [self._model_card()]})

    async def model(self, request: Request) -> Response:
        if request.path_params["model"] != self.served.name:
            error = ApiError(404, f"The model `{request.path_params['model']}` does not exist", param="model",
                             code="model_not_found")
            return JSONResponse(error.body(), error.status)
        return JSONResponse(self._model_card())

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "engines": len(self.pool.backends), "busy": self.pool.busy,
                             "waiting": self.pool.waiting})

    # -- helpers ------------------------------------------------------------------------------

    async def _acquire(self, started: float):
        try:
            backend = await self.pool.acquire()
        except ApiError as error:
            if error.status == 429:
                self.metrics.rejected.inc()
            raise
        self.metrics.queue_seconds.observe(time.perf_counter() - started)
        return backend

    async def _complete(self, job: ChatJob, backend, started: float) -> Outcome:
        run_started = time.perf_counter()
        future = self.pool.run(run_job, backend, job, None, lambda: False)
        self.pool.release_when_done(backend, future, run_started)
        outcome = await asyncio.shield(future)
        self._observe(outcome, started, run_started, stream=False)
        return outcome

    def _stream(self, job: ChatJob, backend, started: float, info: dict) -> AsyncIterator[bytes]:
        """Start the model call now and return the events that follow it. Starting here, not in
        the generator, gives the engine back even if the response is never read."""
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue = asyncio.Queue()
        gone = threading.Event()

        def emit(text: str) -> None:  # on the worker thread
            loop.call_soon_threadsafe(deltas.put_nowait, text)

        run_started = time.perf_counter()
        future = self.pool.run(run_job, backend, job, emit, gone.is_set)
        self.pool.release_when_done(backend, future, run_started)
        future.add_done_callback(lambda _: deltas.put_nowait(_DONE))
        return self._events(job, backend, future, deltas, gone, started, run_started, info)

    async def _events(self, job: ChatJob, backend, future, deltas: asyncio.Queue, gone: threading.Event,
                      started: float, run_started: float, info: dict) -> AsyncIterator[bytes]:
        status = 200
        try:
            yield _sse(self._chunk(job, {"role": "assistant", "content": ""}))
            while True:
                item = await deltas.get()
                if item is _DONE:
                    break
                yield _sse(self._chunk(job, {"content": item}))
            error = future.exception()
            if error is not None:
                api_error = _api_error(error)
                status, info["error"] = api_error.status, api_error.code or api_error.type
                yield _sse(api_error.body())
                return
            outcome: Outcome = future.result()
            self._observe(outcome, started, run_started, stream=True)
            info.update(_outcome_info(outcome))
            yield _sse(self._chunk(job, {}, outcome.finish_reason))
            if job.include_usage:
                yield _sse({**self._chunk(job, None), "usage": _usage(outcome)})
            yield b"data: [DONE]\n\n"
        finally:
            if not future.done():  # the client went away mid-answer: stop the model call
                gone.set()  # (at its next token)
                info["error"] = "client_gone"
                abort = getattr(backend, "abort", None)
                if abort is not None:  # (or sooner: between prefill chunks and ViT calls)
                    abort()
            self._log(status, info, started)

    def _observe(self, outcome: Outcome, started: float, run_started: float, stream: bool) -> None:
        m = self.metrics
        m.request_seconds.labels(str(stream).lower()).observe(time.perf_counter() - started)
        m.first_token_seconds.observe(run_started - started + outcome.first_token_s)
        m.prompt_tokens.inc(outcome.prompt_tokens)
        m.completion_tokens.inc(outcome.completion_tokens)

    def _chunk(self, job: ChatJob, delta: Optional[dict], finish: Optional[str] = None) -> dict:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        return {
            "id": job.id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.served.name,
            "system_fingerprint": None,
            "choices": choices,
        }

    def _completion(self, job: ChatJob, outcome: Outcome) -> dict:
        return {
            "id": job.id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.served.name,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": outcome.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": outcome.finish_reason,
                }
            ],
            "usage": _usage(outcome),
        }

    def _model_card(self) -> dict:
        card: dict[str, Any] = {"id": self.served.name, "object": "model", "created": self.created,
                                "owned_by": "streamproc"}
        if self.served.context_length:
            card["max_model_len"] = self.served.context_length
        return card

    def _log(self, status: int, info: dict, started: float) -> None:
        fields = " ".join(f"{k}={v}" for k, v in info.items() if k != "content")
        content = f" content={info['content']!r}" if "content" in info else ""
        log.info("POST /v1/chat/completions %d in %.1f ms %s%s", status, (time.perf_counter() - started) * 1e3,
                 fields, content)


def _api_error(error: BaseException) -> ApiError:
    if isinstance(error, ApiError):
        return error
    if isinstance(error, StreamprocError):
        return from_streamproc(error)
    log.error("unexpected error serving a request", exc_info=error)
    return ApiError(500, f"internal error: {type(error).__name__}", type="server_error")


def _usage(outcome: Outcome) -> dict:
    return {
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "total_tokens": outcome.prompt_tokens + outcome.completion_tokens,
    }


def _outcome_info(outcome: Outcome) -> dict:
    return {
        "completion_tokens": outcome.completion_tokens,
        "finish": outcome.finish_reason,
        "model_ms": round(outcome.model_s * 1e3, 1),
    }


def _sse(data: dict) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode("utf-8") + b"\n\n"


def _message_text(body: Any) -> list[str]:
    """The text of the messages, for `--log-content` (media is never logged)."""
    texts = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return texts


def openai_routes(api: ChatApi, extra_routes: Sequence[BaseRoute] = ()) -> list[BaseRoute]:
    """The API's routes (then `extra_routes`: the caption store's read API and the web view,
    streamproc/web/asgi.py). /healthz is public; everything else needs the key when one is set."""
    return [
        Route("/v1/chat/completions", api.chat_completions, methods=["POST"]),
        Route("/v1/models", api.models, methods=["GET"]),
        Route("/v1/models/{model:path}", api.model, methods=["GET"]),
        Route("/metrics", api.prometheus, methods=["GET"]),
        PublicRoute("/healthz", api.healthz, methods=["GET"]),
        *extra_routes,
    ]


def create_app(
    pool: EnginePool,
    served: ServedModel,
    options: Optional[ServeOptions] = None,
    http: Optional[HttpConfig] = None,
    extra_routes: Sequence[BaseRoute] = (),
    max_body_bytes: int = 64 * 1024 * 1024,
) -> Starlette:
    """The API behind the HTTP middleware for `http` (keys, hosts, limits; default: loopback, no
    key). `max_body_bytes`: images arrive base64-encoded in the JSON body."""
    api = ChatApi(pool, served, options or ServeOptions())
    app = build_app(openai_routes(api, extra_routes), http or HttpConfig(), max_body_bytes=max_body_bytes)
    app.state.api = api
    return app
