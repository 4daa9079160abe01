"""The `openai` backend: any OpenAI-compatible chat-completions server describes the segments.

vLLM, Ollama, llama.cpp's server, or another box running `streamproc serve`: each segment's frames
go out as JPEG images (data: URLs) in one user message with the prompt; the answer's text and the
server's `usage` make the Result. Alert-rule questions are follow-up turns: the conversation so
far (frames, caption, question) is sent again, as the server keeps no state between requests.

There may be no local tokenizer, so the pipeline's questions to `backend.inputs` (prompt tokens,
the vision geometry, follow-ups) are answered by `RemoteInputs`: exact counts with
`backend.tokenizer` set, else estimates; segment sizes come from `backend.seq_length`.

Retries: 429, 5xx, timeouts and refused connections are retried with exponential back-off
(Retry-After wins when the server sends one); other 4xx answers are not, since the request
itself is wrong. The API key comes from the environment variable the config names and is
registered for redaction, so it never reaches logs, events or errors.
"""
from __future__ import annotations

import base64
import http.client
import json
import logging
import math
import os
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Optional, Sequence
from urllib.parse import urlsplit

import numpy as np

from ..config.openai import OpenAIBackendConfig
from ..errors import Aborted, BackendError, ConfigError, InputTooLarge, ModelError
from ..qwen.builder import RequestBuilder
from ..qwen.vision import VisionSpec
from ..redact import redact, register_secret
from .base import BackendCapabilities, GenerationParams, ModelGeometry, Result, Timings

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
TOKEN_PIXELS = 28 * 28  # a Qwen2.5-VL image token spans 28x28 pixels (the estimate for other models too)
MESSAGE_OVERHEAD = 4  # template tokens around each message (<|im_start|>role\n ... <|im_end|>\n)
# The server's tokens are estimated (28x28 pixels an image token): the limit is the config's.
BUDGET_HINT = "use shorter segments or fewer images (backend.max_images), or raise backend.seq_length"


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """An (H, W, 3) uint8 RGB frame as a baseline JPEG with PyAV's mjpeg encoder (q scale 2..31)."""
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = frame.width, frame.height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = Fraction(1, 1)
    codec.qmin = codec.qmax = quality
    packets = list(codec.encode(frame.reformat(format="yuvj420p"))) + list(codec.encode(None))
    return b"".join(bytes(p) for p in packets)


class EstimatingTokenizer:
    """Token counts without the model's tokenizer: about one token per 3.5 characters of text,
    which over-counts English for BPE vocabularies (segments come out a little short, never too long)."""

    def encode(self, text: str) -> list[int]:
        return [0] * math.ceil(len(text) / 3.5)


@dataclass
class RemoteRequest:
    """A conversation for the server, and what the pipeline reads of model inputs."""

    messages: list[dict[str, Any]]
    visual_tokens: int  # estimated: 28x28 pixels per image token
    text_tokens: int  # exact with a tokenizer, else estimated
    answer: Optional[str] = None  # set by describe(): the turn a follow-up continues from
    frames: int = 0

    @property
    def total_tokens(self) -> int:
        return self.visual_tokens + self.text_tokens

    cached_tokens: int = field(default=0, repr=False)  # no KV cache across requests


class RemoteInputs(RequestBuilder):
    """The model-input builder for a remote model: frames and text, kept as chat messages."""

    def __init__(self, config: OpenAIBackendConfig):
        self.config = config
        self.seq_length: Optional[int] = config.seq_length
        pixels = config.max_pixels
        self.vision = VisionSpec(image_max_pixels=pixels, video_max_pixels=pixels)
        if config.tokenizer is not None:
            from ..qwen.tokenizer import QwenTokenizer

            self.tokenizer: Any = QwenTokenizer.from_dir(config.tokenizer)
        else:
            self.tokenizer = EstimatingTokenizer()
        self.stop_ids: tuple[int, ...] = ()

    # -- what the planner asks ----------------------------------------------------------------

    def text_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text)) + MESSAGE_OVERHEAD

    def prompt_tokens(self, prompt: str, system: Any = None, visuals: Sequence[Any] = ()) -> int:
        tokens = self.text_tokens(prompt) + MESSAGE_OVERHEAD  # the user turn and the answer's header
        if isinstance(system, str):
            tokens += self.text_tokens(system)
        return tokens

    # -- requests -----------------------------------------------------------------------------

    def build(
        self,
        prompt: str,
        video: Any = None,
        images: Optional[Sequence[np.ndarray]] = None,
        fps: float = 1.0,
        system: Any = None,
        answer_reserve: int = 0,
    ) -> RemoteRequest:
        """One user turn: the images, then the video's frames as images, then the prompt."""
        frames = list(images or ())
        if video is not None:
            frames.extend(self._sample(list(video)))
        parts: list[dict[str, Any]] = [self._image_part(frame) for frame in frames]
        parts.append({"type": "text", "text": prompt})
        messages = [{"role": "system", "content": system}] if isinstance(system, str) else []
        messages.append({"role": "user", "content": parts})
        visual = sum(max(1, (f.shape[0] * f.shape[1]) // TOKEN_PIXELS) for f in frames)
        request = RemoteRequest(messages, visual, self.prompt_tokens(prompt, system), frames=len(frames))
        self.check_budget(request, answer_reserve, BUDGET_HINT)
        return request

    def follow_up(self, previous: RemoteRequest, answer_ids: Sequence[int], text: str,
                  answer_reserve: int = 0) -> RemoteRequest:
        """The conversation so far plus a question. The answer is the text describe() stored
        on `previous` (a remote model's token ids mean nothing here)."""
        if previous.answer is None:
            raise ModelError("a follow-up needs the previous request to have been answered first")
        messages = previous.messages + [
            {"role": "assistant", "content": previous.answer},
            {"role": "user", "content": text},
        ]
        tokens = previous.text_tokens + self.text_tokens(previous.answer) + self.text_tokens(text) + MESSAGE_OVERHEAD
        request = RemoteRequest(messages, previous.visual_tokens, tokens, frames=previous.frames)
        self.check_budget(request, answer_reserve, BUDGET_HINT)
        return request

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        raise ModelError("the openai backend has no local tokenizer to decode with")

    def _sample(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        limit = self.config.max_images
        if limit is None or len(frames) <= limit:
            return frames
        picks = np.linspace(0, len(frames) - 1, limit).round().astype(int)
        return [frames[i] for i in picks]

    def _image_part(self, frame: np.ndarray) -> dict[str, Any]:
        data = base64.b64encode(encode_jpeg(frame, self.config.jpeg_quality)).decode("ascii")
        return {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}}


class OpenAIBackend:
    """One connection to the server; one request at a time (the service gives each worker one)."""

    name = "openai"

    @staticmethod
    def geometry(config: OpenAIBackendConfig) -> ModelGeometry:
        """What the remote model takes, as far as the config says (no network)."""
        return ModelGeometry(
            model=config.model,
            seq_length=config.seq_length,
            max_context=config.seq_length,
            max_input=None,
            image_min_pixels=TOKEN_PIXELS,
            image_max_pixels=config.max_pixels,
            video_min_pixels=TOKEN_PIXELS,
            video_max_pixels=config.max_pixels,
            keeps_history=False,
            family=None,  # whatever the server runs
        )

    @staticmethod
    def input_builder(config: OpenAIBackendConfig) -> "RemoteInputs":
        return RemoteInputs(config)

    def __init__(self, config: OpenAIBackendConfig):
        self.config = config
        self.model_id = config.model
        self._inputs = RemoteInputs(config)
        self._api_key: Optional[str] = None
        if config.api_key_env:
            self._api_key = os.environ.get(config.api_key_env) or None
            if self._api_key is None:
                raise ConfigError(
                    f"backend.api_key_env names ${config.api_key_env}, which is not set: export the key there"
                )
            register_secret(self._api_key)
        url = urlsplit(config.base_url)
        self._https = url.scheme == "https"
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or (443 if self._https else 80)
        self._path = (url.path or "").rstrip("/") + "/chat/completions"
        self._connection: Optional[http.client.HTTPConnection] = None
        self._aborted = threading.Event()
        self._lock = threading.Lock()
        self.retries = 0  # requests re-sent after a retryable failure (for logs and tests)

    # -- Backend protocol ---------------------------------------------------------------------

    @property
    def capabilities(self) -> BackendCapabilities:
        return BackendCapabilities(
            family=None, seq_length=self.config.seq_length, keeps_history=False, follow_up=True, sampling=True,
            streaming=False, geometry=self.geometry(self.config),
        )

    @property
    def seq_length(self) -> int:
        return self.config.seq_length

    @property
    def inputs(self) -> RemoteInputs:
        return self._inputs

    def describe(self, inputs: RemoteRequest, params: GenerationParams) -> Result:
        with self._lock:
            self._aborted.clear()
            started = time.perf_counter()
            body = self._payload(inputs, params)
            answer = self._post_with_retries(body)
            return self._result(inputs, answer, time.perf_counter() - started)

    def follow_up(self, inputs: RemoteRequest, params: GenerationParams) -> Result:
        return self.describe(inputs, params)

    def abort(self) -> None:
        """Stop the request in progress: its socket is shut, and it raises Aborted."""
        self._aborted.set()
        connection = self._connection
        if connection is not None and connection.sock is not None:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._drop_connection()

    # -- one request --------------------------------------------------------------------------

    def _payload(self, inputs: RemoteRequest, params: GenerationParams) -> bytes:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": inputs.messages,
            "max_tokens": params.max_new_tokens,
            "stream": False,
        }
        if params.do_sample:
            body.update(temperature=params.temperature, top_p=params.top_p)
        else:
            body["temperature"] = 0  # greedy on every OpenAI-compatible server
        if params.seed is not None:
            body["seed"] = params.seed
        return json.dumps(body).encode("utf-8")

    def _post_with_retries(self, body: bytes) -> dict[str, Any]:
        delay = self.config.retry_initial_s
        for attempt in range(self.config.max_retries + 1):
            last = attempt == self.config.max_retries
            try:
                status, headers, data = self._post(body)
            except (OSError, http.client.HTTPException) as error:
                self._drop_connection()
                if self._aborted.is_set():
                    raise Aborted(f"{self.model_id}: the request was aborted") from None
                problem = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
                if last:
                    raise BackendError(f"{self._where()} did not answer: {problem}", retryable=True) from None
                log.warning("%s did not answer (%s); retrying in %.1f s", self._where(), redact(problem), delay)
            else:
                if status == 200:
                    return self._parse(data)
                message = self._error_message(data)
                if status not in RETRY_STATUSES or last:
                    raise self._status_error(status, message)
                retry_after = _retry_after(headers.get("retry-after"))
                delay = min(max(delay, retry_after or 0.0), self.config.retry_max_s)
                log.warning("%s answered %d (%s); retrying in %.1f s", self._where(), status, message, delay)
            self.retries += 1
            if self._aborted.wait(delay * (0.9 + 0.2 * random.random())):
                raise Aborted(f"{self.model_id}: the request was aborted")
            delay = min(delay * 2, self.config.retry_max_s)
        raise BackendError(f"{self._where()} failed")  # not reached: the last attempt raises

    def _post(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        connection = self._connect()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        connection.request("POST", self._path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        if response.will_close:
            self._drop_connection()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            connection = kind(self._host, self._port, timeout=self.config.connect_timeout_s)
            connection.connect()
            assert connection.sock is not None
            connection.sock.settimeout(self.config.timeout_s)  # connected: now the answer's timeout
            self._connection = connection
        return self._connection

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _where(self) -> str:
        return f"the OpenAI-compatible server at {redact(self.config.base_url)}"

    def _parse(self, data: bytes) -> dict[str, Any]:
        try:
            answer = json.loads(data)
            answer["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise BackendError(f"{self._where()} sent an answer that is not a chat completion", retryable=True) from None
        return answer

    @staticmethod
    def _error_message(data: bytes) -> str:
        try:
            error = json.loads(data).get("error")
            message = error.get("message") if isinstance(error, dict) else error
        except (ValueError, AttributeError):
            message = None
        return redact(" ".join(str(message or data[:200].decode("utf-8", "replace")).split()))

    def _status_error(self, status: int, message: str) -> Exception:
        text = f"{self._where()} answered {status}: {message}"
        if status in (401, 403):
            return BackendError(text + " (check the API key in $" + str(self.config.api_key_env) + ")", retryable=False)
        if status == 404:
            return ModelError(text + f" (is backend.model {self.config.model!r} served there?)")
        if status in (400, 413, 422):
            return InputTooLarge(text) if "context" in message.lower() or status == 413 else ModelError(text)
        return BackendError(text, retryable=status in RETRY_STATUSES)

    def _result(self, inputs: RemoteRequest, answer: dict[str, Any], seconds: float) -> Result:
        choice = answer["choices"][0]
        text = (choice["message"].get("content") or "").strip()
        inputs.answer = text
        usage = answer.get("usage") or {}
        prompt = usage.get("prompt_tokens")
        generated = usage.get("completion_tokens")
        return Result(
            text=text,
            prompt_tokens=int(prompt) if isinstance(prompt, int) else inputs.total_tokens,
            visual_tokens=inputs.visual_tokens,
            generated_tokens=int(generated) if isinstance(generated, int) else 0,
            model=str(answer.get("model") or self.model_id),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            timings=Timings(total_s=seconds),
        )


def _retry_after(value: Optional[str]) -> Optional[float]:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
