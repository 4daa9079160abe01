"""`streamproc serve --bmodel` on the CPU simulator (a real subprocess, the real libbmrt) against
the official `openai` client. The simulator takes seconds per token, so answers are 1-3 tokens and
requests few: text, streamed text, one and two images, the greedy answer equal to `streamproc
chat`, and the errors a bmodel adds (context, no sampling head)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from tests.support.serve import data_url, image_part, serve_process, test_image, user  # noqa: E402
from tests.support.service import REPO  # noqa: E402
from tests.tpu.conftest import bmodel_path  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.cpu_bound]

FIXTURE = "dynamic_bf16_s256"  # greedy only (no --do_sample), 256 tokens of context
QUESTION = "Describe a quiet street."


@pytest.fixture(scope="module")
def bmodel():
    return bmodel_path(FIXTURE)


@pytest.fixture(scope="module")
def server(runtime_dir, tiny_model_dir, bmodel, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-tpu")
    args = ["--bmodel", str(bmodel), "--tokenizer", str(tiny_model_dir), "--runtime-dir", runtime_dir]
    with serve_process(tmp, args, env={"STREAMPROC_API_KEY": ""}) as served:
        yield served


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def text_answer(client, bmodel):
    return client.chat.completions.create(model=bmodel.name, messages=user(QUESTION), max_tokens=3)


def test_models(client, bmodel):
    (card,) = client.models.list().data
    assert card.id == bmodel.name and card.model_extra.get("max_model_len") == 256


def test_text_and_streamed_text_agree(client, bmodel, text_answer):
    assert text_answer.choices[0].message.content
    assert text_answer.usage.completion_tokens == 3 and text_answer.choices[0].finish_reason == "length"
    chunks = list(client.chat.completions.create(model=bmodel.name, messages=user(QUESTION), max_tokens=3,
                                                 stream=True, stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) >= 2  # the engine's tokens, as they come
    assert "".join(deltas) == text_answer.choices[0].message.content
    assert chunks[-1].usage.prompt_tokens == text_answer.usage.prompt_tokens


def test_one_and_two_images(client, bmodel, text_answer):
    one = client.chat.completions.create(
        model=bmodel.name, messages=user(image_part(data_url(test_image(1))), QUESTION), max_tokens=1)
    two = client.chat.completions.create(
        model=bmodel.name,
        messages=user(image_part(data_url(test_image(1))), image_part(data_url(test_image(2))), QUESTION),
        max_tokens=1,
    )
    base = text_answer.usage.prompt_tokens
    assert one.usage.prompt_tokens == base + 8 and two.usage.prompt_tokens == base + 16  # 2x3 tokens + start/end
    assert one.usage.completion_tokens == 1 and two.usage.completion_tokens == 1


def test_greedy_answer_equals_streamproc_chat(bmodel, tiny_model_dir, runtime_dir, text_answer):
    command = [sys.executable, "-m", "streamproc", "chat", "--bmodel", str(bmodel), "--tokenizer",
               str(tiny_model_dir), "--runtime-dir", runtime_dir, "-p", QUESTION, "--max-new-tokens", "3"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout.split("model> ", 1)[1].strip()
    assert printed == text_answer.choices[0].message.content


@pytest.mark.parametrize(
    "change, status, code, param",
    [
        ({"temperature": 0.7}, 400, "unsupported_value", "temperature"),
        ({"top_p": 0.5}, 400, "unsupported_value", "top_p"),
        ({"max_tokens": 1000}, 400, "context_length_exceeded", "max_tokens"),
        ({"messages": user("word " * 300)}, 400, "context_length_exceeded", "messages"),
        ({"messages": user(image_part("data:image/jpeg;base64,/9j/4AAQSkZJRgABAQ=="), "What?")}, 400, "invalid_image",
         "messages[0].content[0]"),  # a JPEG cut short: refused from its header, naming the part
        ({"model": "qwen2.5-vl-72b"}, 404, "model_not_found", "model"),
    ],
)
def test_errors(client, bmodel, change, status, code, param):
    request = {"model": bmodel.name, "messages": user(QUESTION), "max_tokens": 1, **change}
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(**request)
    assert raised.value.status_code == status
    assert raised.value.code == code and raised.value.body["param"] == param
    if code == "unsupported_value":
        assert "greedily only" in raised.value.message


def test_sampling_head_takes_temperature_and_seed(runtime_dir, tiny_model_dir, tmp_path):
    """A bmodel compiled with --do_sample: temperature/top_p/seed reach its sample head, and the
    same seed gives the same answer."""
    bmodel = bmodel_path("sample_dynamic_bf16_s128")
    args = ["--bmodel", str(bmodel), "--tokenizer", str(tiny_model_dir), "--runtime-dir", runtime_dir]
    with serve_process(tmp_path, args, env={"STREAMPROC_API_KEY": ""}, name="serve-sample") as served:
        client = openai.OpenAI(base_url=served.base_url, api_key="unused", max_retries=0, timeout=300)

        def sampled():
            answer = client.chat.completions.create(model=bmodel.name, messages=user(QUESTION), max_tokens=2,
                                                    temperature=0.8, top_p=0.9, seed=11)
            assert answer.usage.completion_tokens == 2
            return answer.choices[0].message.content

        assert sampled() == sampled()
