"""The openai backend's HTTP behaviour against a scripted stdlib server on 127.0.0.1 (the seam:
what the server answers is chosen per test): retries of 429/5xx with Retry-After, no retry of a
400, the API key from the environment sent as a Bearer token and never shown in errors, token
counts from `usage`, frames as JPEG images, follow-ups carrying the previous answer, and the
config's place in the backend union. The real server is in test_serve_openai_backend.py."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from streamproc.backends.base import GenerationParams, create_backend
from streamproc.config import Config
from streamproc.config.openai import OpenAIBackendConfig
from streamproc.errors import Aborted, BackendError, ConfigError, InputTooLarge, ModelError

COMPLETION = {
    "id": "x", "object": "chat.completion", "model": "remote-vl",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": " A cat sits. "}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 321, "completion_tokens": 5, "total_tokens": 326},
}  # fmt: skip


class Scripted:
    """Answers each POST with the next (status, headers, body) of `script`; records requests."""

    def __init__(self, script, delay_s: float = 0.0):
        self.script = list(script)
        self.delay_s = delay_s
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                time.sleep(outer.delay_s)
                status, headers, answer = outer.script.pop(0) if outer.script else (200, {}, COMPLETION)
                data = json.dumps(answer).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def backend_for(server, **overrides):
    settings = {"base_url": server.url, "model": "remote-vl", "retry_initial_s": 0.01, "max_retries": 3, **overrides}
    return create_backend(OpenAIBackendConfig(**settings))


def frames(count=4, height=56, width=84):
    return (np.random.default_rng(0).random((count, height, width, 3)) * 255).astype(np.uint8)


def error(message):
    return {"error": {"message": message, "type": "x", "param": None, "code": None}}


def test_frames_go_as_jpeg_images_and_usage_gives_the_counts():
    with Scripted([]) as server:
        backend = backend_for(server)
        request = backend.inputs.build("What happens?", video=frames(), system="Be brief.")
        result = backend.describe(request, GenerationParams(max_new_tokens=7))
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    body = sent["body"]
    assert body["model"] == "remote-vl" and body["max_tokens"] == 7 and body["temperature"] == 0
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    parts = body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["image_url"] * 4 + ["text"]
    assert all(p["image_url"]["url"].startswith("data:image/jpeg;base64,/9j/") for p in parts[:4])
    assert result.text == "A cat sits." and result.prompt_tokens == 321 and result.generated_tokens == 5
    assert result.visual_tokens == 4 * 6 and result.model == "remote-vl" and result.finish_reason == "stop"


def test_follow_up_sends_the_conversation_with_the_answer():
    with Scripted([]) as server:
        backend = backend_for(server)
        first = backend.inputs.build("Describe.", video=frames(2))
        answer = backend.describe(first, GenerationParams())
        turn = backend.inputs.follow_up(first, answer.token_ids, "Is there a cat?", answer_reserve=8)
        backend.follow_up(turn, GenerationParams(max_new_tokens=3))
    messages = server.requests[1]["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == "A cat sits." and messages[2]["content"] == "Is there a cat?"


def test_429_and_5xx_are_retried_honouring_retry_after():
    script = [(429, {"Retry-After": "0"}, error("slow down")), (503, {}, error("loading")), (502, {}, "bad gateway")]
    with Scripted(script) as server:
        backend = backend_for(server)
        result = backend.describe(backend.inputs.build("Hi", video=frames(2)), GenerationParams())
    assert len(server.requests) == 4 and backend.retries == 3 and result.text == "A cat sits."


def test_retries_run_out_with_a_retryable_error():
    with Scripted([(503, {}, error("overloaded"))] * 3) as server:
        backend = backend_for(server, max_retries=2)
        with pytest.raises(BackendError) as raised:
            backend.describe(backend.inputs.build("Hi", video=frames(2)), GenerationParams())
    assert raised.value.retryable and "503" in str(raised.value) and "overloaded" in str(raised.value)
    assert len(server.requests) == 3


def test_a_bad_request_is_not_retried():
    script = [(400, {}, error("This model's maximum context length is 4096 tokens"))]
    with Scripted(script) as server:
        backend = backend_for(server)
        with pytest.raises(InputTooLarge):
            backend.describe(backend.inputs.build("Hi", video=frames(2)), GenerationParams())
    with Scripted([(404, {}, error("The model `remote-vl` does not exist"))]) as server:
        backend = backend_for(server)
        with pytest.raises(ModelError):
            backend.describe(backend.inputs.build("Hi", video=frames(2)), GenerationParams())
    assert len(server.requests) == 1


def test_api_key_from_the_environment_is_sent_but_never_shown(monkeypatch):
    key = "sk-unit-secret-42424242"
    monkeypatch.setenv("REMOTE_VL_KEY", key)
    with Scripted([(401, {}, error(f"Incorrect API key provided: {key}"))]) as server:
        backend = backend_for(server, api_key_env="REMOTE_VL_KEY")
        with pytest.raises(BackendError) as raised:
            backend.describe(backend.inputs.build("Hi", video=frames(2)), GenerationParams())
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {key}"
    assert not raised.value.retryable and key not in str(raised.value) and "401" in str(raised.value)


def test_a_missing_key_variable_is_a_config_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ConfigError, match="NO_SUCH_KEY_VAR"):
        create_backend(OpenAIBackendConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="NO_SUCH_KEY_VAR"))


def test_refused_connection_is_retryable_backend_error():
    backend = create_backend(OpenAIBackendConfig(base_url="http://127.0.0.1:9/v1", model="m", max_retries=1,
                                                 retry_initial_s=0.01))
    with pytest.raises(BackendError) as raised:
        backend.describe(backend.inputs.build("Hi", video=frames(2)), GenerationParams())
    assert raised.value.retryable and "did not answer" in str(raised.value)


def test_max_images_spreads_the_frames_and_budget_is_checked():
    config = OpenAIBackendConfig(base_url="http://127.0.0.1:9/v1", model="m", max_images=3, seq_length=256)
    inputs = create_backend(config).inputs
    request = inputs.build("Hi", video=frames(10))
    assert request.frames == 3 and sum(p["type"] == "image_url" for p in request.messages[0]["content"]) == 3
    with pytest.raises(InputTooLarge, match="sequence length 256: .*backend.max_images"):
        inputs.build("Hi", video=frames(3, 280, 280))


def test_config_union_takes_type_openai():
    config = Config.model_validate(
        {"backend": {"type": "openai", "base_url": "http://gpu:8000/v1/", "model": "Qwen/Qwen2.5-VL-7B-Instruct"}}
    )
    assert isinstance(config.backend, OpenAIBackendConfig) and config.backend.base_url == "http://gpu:8000/v1"
    with pytest.raises(ValueError):
        Config.model_validate({"backend": {"type": "openai", "base_url": "gpu:8000", "model": "m"}})


def test_abort_stops_a_request_waiting_for_its_answer():
    with Scripted([], delay_s=5.0) as server:
        backend = backend_for(server)
        request = backend.inputs.build("Hi", video=frames(2))
        threading.Timer(0.3, backend.abort).start()
        started = time.monotonic()
        with pytest.raises(Aborted):
            backend.describe(request, GenerationParams())
        assert time.monotonic() - started < 3
        assert len(server.requests) == 1  # not retried
