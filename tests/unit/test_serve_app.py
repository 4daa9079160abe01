"""The API's HTTP edges on a real uvicorn on 127.0.0.1, before any model runs: body size limit
(413), malformed JSON (400), the API key on /v1 routes, OpenAI's error shape. The backend is a
stand-in that must never be called (these requests are refused before they reach it)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from streamproc.server.app import ServeOptions, create_app  # noqa: E402
from streamproc.server.launch import ServerThread, served_model  # noqa: E402
from streamproc.server.pool import EnginePool  # noqa: E402


class Untouchable:
    name, model_id, seq_length, inputs = "none", "stand-in", None, None

    def describe(self, *args, **kwargs):
        raise AssertionError("the model must not run for a refused request")

    def close(self):
        pass


@pytest.fixture(scope="module")
def root():
    pool = EnginePool([Untouchable()], queue_size=1)
    options = ServeOptions(api_key="sk-app-test-123456", max_body_bytes=1024)
    with ServerThread(create_app(pool, served_model(Untouchable()), options)) as server:
        yield f"http://127.0.0.1:{server.port}"


def call(url, body=None, key="sk-app-test-123456", headers=None):
    request = urllib.request.Request(url, data=body, headers={**({"Authorization": f"Bearer {key}"} if key else {}),
                                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_body_over_the_limit_is_413(root):
    status, body = call(f"{root}/v1/chat/completions", b"x" * 2048, headers={"Content-Type": "application/json"})
    assert status == 413 and body["error"]["code"] == "request_too_large"


def test_malformed_json_is_400(root):
    status, body = call(f"{root}/v1/chat/completions", b"{not json", headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["type"] == "invalid_request_error" and "JSON" in body["error"]["message"]


def test_key_guards_the_v1_routes_but_not_health(root):
    assert call(f"{root}/v1/models", key=None)[0] == 401
    status, body = call(f"{root}/v1/models", key="sk-wrong")
    assert status == 401 and body == {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                                "param": None, "code": "invalid_api_key"}}
    assert call(f"{root}/v1/models")[1]["data"][0]["id"] == "stand-in"
    assert call(f"{root}/healthz", key=None)[0] == 200


def test_a_body_that_is_not_an_object_is_400(root):
    status, body = call(f"{root}/v1/chat/completions", b"[1, 2]", headers={"Content-Type": "application/json"})
    assert status == 400 and "JSON object" in body["error"]["message"]
