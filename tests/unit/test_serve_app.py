"""The OpenAI API's edges on a real uvicorn on 127.0.0.1, before any model runs: body size (413),
malformed and too deeply nested JSON (400), the API key on every route but /healthz, OpenAI's
error shape, a pixel bomb refused from its header before decoding, text too long for the context
refused before tokenizing. The backend is a stand-in that must never be called."""
from __future__ import annotations

import base64
import json
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib

import pytest

from streamproc.config.http import HttpConfig
from streamproc.http import HttpServer
from streamproc.openai_api.app import create_app
from streamproc.openai_api.launch import default_model_name, served_model
from streamproc.openai_api.pool import EnginePool
from streamproc.qwen.config import VisionSpec

KEY = "sk-app-test-123456"
pytestmark = pytest.mark.timeout(60)


class Untouchable:
    """A backend whose inputs may look at the vision geometry but never tokenize or run."""

    name, model_id, seq_length = "none", "stand-in", 2048

    class inputs:  # noqa: N801 - the attribute a backend has
        vision = VisionSpec()

        class tokenizer:  # noqa: N801
            @staticmethod
            def encode(text):
                raise AssertionError("the request must be refused before it is tokenized")

    def describe(self, *args, **kwargs):
        raise AssertionError("the model must not run for a refused request")

    def close(self):
        pass


@pytest.fixture(scope="module")
def root():
    pool = EnginePool([Untouchable()], queue_size=1)
    app = create_app(pool, served_model(Untouchable()), http=HttpConfig(api_key=[KEY]), max_body_bytes=4 * 1024 * 1024)
    with HttpServer(app) as server:
        yield f"http://127.0.0.1:{server.port}"
    app.state.api.close()


def call(url, body=None, key=KEY, headers=None):
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(url, data=body, headers={**auth, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def chat(root, body: dict):
    return call(f"{root}/v1/chat/completions", json.dumps(body).encode(), headers={"Content-Type": "application/json"})


def one_colour_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of width x height, all black: a few KiB that decode to width x
    height pixels (the issue's pixel bomb, made cheaply)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_body_over_the_limit_is_413(root):
    status, body = call(f"{root}/v1/chat/completions", b"x" * (5 * 1024 * 1024), headers={"Content-Type": "application/json"})
    assert status == 413 and body["error"]["code"] == "request_too_large"


def test_malformed_json_is_400(root):
    status, body = call(f"{root}/v1/chat/completions", b"{not json", headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["type"] == "invalid_request_error" and "JSON" in body["error"]["message"]


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_json_is_400_not_500(root, depth):
    nested = b'{"model": "stand-in", "messages": ' + b"[" * depth + b"]" * depth + b"}"
    status, body = call(f"{root}/v1/chat/completions", nested, headers={"Content-Type": "application/json"})
    assert status == 400 and "deeper than" in body["error"]["message"]


def test_key_guards_every_route_but_health(root):
    for path in ("/v1/models", "/v1/models/stand-in", "/metrics"):
        assert call(f"{root}{path}", key=None)[0] == 401, path
    status, body = call(f"{root}/v1/models", key="sk-wrong")
    assert status == 401 and body == {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                                "param": None, "code": "invalid_api_key"}}
    assert call(f"{root}/v1/models")[1]["data"][0]["id"] == "stand-in"
    assert call(f"{root}/healthz", key=None)[0] == 200


def test_a_body_that_is_not_an_object_is_400(root):
    status, body = call(f"{root}/v1/chat/completions", b"[1, 2]", headers={"Content-Type": "application/json"})
    assert status == 400 and "JSON object" in body["error"]["message"]


def test_a_pixel_bomb_is_refused_from_its_header_before_decoding(root):
    bomb = one_colour_png(16000, 16000)
    url = "data:image/png;base64," + base64.b64encode(bomb).decode()
    body = {"model": "stand-in", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "what is this?"}]}]}
    baseline, peak, done = rss_bytes(), [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.perf_counter()
    try:
        status, answer = chat(root, body)
    finally:
        elapsed = time.perf_counter() - started
        done.set()
        watcher.join()
    assert status == 400 and answer["error"]["code"] == "invalid_image"
    assert "16000x16000" in answer["error"]["message"]
    assert elapsed < 1.0, f"refusing took {elapsed:.2f} s"
    assert peak[0] - baseline < 50 * 1024 * 1024, f"memory grew by {(peak[0] - baseline) / 2**20:.0f} MiB"


def test_an_unknown_image_format_is_refused(root):
    url = "data:image/tiff;base64," + base64.b64encode(b"II*\x00" + b"\x00" * 64).decode()
    status, answer = chat(root, {"model": "stand-in", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}]}]})
    assert status == 400 and answer["error"]["code"] == "invalid_image" and "JPEG, PNG" in answer["error"]["message"]


def test_text_longer_than_the_context_can_hold_is_refused_before_tokenizing(root):
    text = "word " * (2048 * 8 // 5 + 10)  # more than 8 bytes per token of a 2048-token context
    status, answer = chat(root, {"model": "stand-in", "messages": [{"role": "user", "content": text}]})
    assert status == 400 and answer["error"]["code"] == "context_length_exceeded"


def test_a_local_checkpoint_is_served_under_its_folder_name(tmp_path):
    folder = tmp_path / "tiny-qwen"
    folder.mkdir()
    assert default_model_name(str(folder)) == "tiny-qwen"
    assert default_model_name("Qwen/Qwen2.5-VL-3B-Instruct") == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert default_model_name("qwen2.5-vl-3b.bmodel") == "qwen2.5-vl-3b.bmodel"
