"""`streamproc serve --model TINY` (the transformers backend, a real subprocess on a real port)
against the official `openai` client: text, streamed text, one and two images, a video file and a
list of frames, greedy answers equal to `streamproc chat`, OpenAI's error shapes and status codes,
the API key, the bounded queue's 429 and the Prometheus metrics."""
from __future__ import annotations

import threading
import time
import urllib.request

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
openai = pytest.importorskip("openai")

from streamproc.cli import main as cli_main  # noqa: E402
from tests.support.serve import data_url, image_part, jpeg_bytes, serve_process, test_image, user  # noqa: E402
from tests.support.service import scrape, metric  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.hf, pytest.mark.timeout(600)]

KEY = "sk-test-0123456789abcdef"
MODEL = "tiny-qwen"


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-hf")
    media = tmp / "media"
    media.mkdir()
    args = ["--model", str(tiny_model_dir), "--served-model-name", MODEL, "--queue-size", "0",
            "--media-dir", str(media), "--max-tokens", "16"]
    with serve_process(tmp, args, env={"STREAMPROC_API_KEY": KEY}) as served:
        served.media = media
        yield served


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=120)


def ask(client, messages, **kwargs):
    kwargs.setdefault("max_tokens", 6)
    return client.chat.completions.create(model=MODEL, messages=messages, temperature=0, **kwargs)


def test_models_lists_the_served_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert client.models.retrieve(MODEL).owned_by == "streamproc"


def test_text_streamed_and_not_agree(client):
    messages = user("Describe a quiet street.")
    whole = ask(client, messages)
    choice = whole.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert whole.usage.prompt_tokens > 5 and 1 <= whole.usage.completion_tokens <= 6
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens

    chunks = list(ask(client, messages, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) >= 2  # token by token, not the whole answer at the end
    text = "".join(deltas)
    assert text == choice.message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [choice.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_max_completion_tokens_limits_the_answer(client):
    answer = client.chat.completions.create(model=MODEL, messages=user("Go on and on."), temperature=0,
                                            max_completion_tokens=3)
    assert answer.usage.completion_tokens == 3 and answer.choices[0].finish_reason == "length"


def test_one_and_two_images_count_their_tokens(client):
    text_only = ask(client, user("What is shown?"))
    one = ask(client, user(image_part(data_url(test_image(1))), "What is shown?"))
    two = ask(client, user(image_part(data_url(test_image(1))), image_part(data_url(test_image(2))), "What is shown?"))
    # 56x84 -> 2x3 tokens of 28 px; each image adds its tokens plus vision start/end.
    assert one.usage.prompt_tokens == text_only.usage.prompt_tokens + 6 + 2
    assert two.usage.prompt_tokens == one.usage.prompt_tokens + 6 + 2
    assert one.choices[0].message.content and two.choices[0].message.content


def test_local_files_inside_the_media_dir(client, server, make_video):
    picture = server.media / "snap.jpg"
    picture.write_bytes(jpeg_bytes(test_image(1)))
    by_path = ask(client, user(image_part(str(picture)), "What is shown?"))
    by_data = ask(client, user(image_part(data_url(test_image(1))), "What is shown?"))
    assert by_path.choices[0].message.content == by_data.choices[0].message.content

    clip = server.media / "clip.mp4"
    clip.write_bytes(make_video(duration_s=4, fps=10, width=112, height=84).read_bytes())
    video = ask(client, user({"type": "video_url", "video_url": {"url": f"file://{clip}"}, "fps": 1}, "What happens?"))
    frames = ask(client, user({"type": "video", "video": [data_url(test_image(i)) for i in range(4)]}, "What happens?"))
    assert video.usage.prompt_tokens > 20 and frames.usage.prompt_tokens > 20
    assert video.choices[0].message.content and frames.choices[0].message.content

    with pytest.raises(openai.BadRequestError) as refused:
        ask(client, user(image_part("/etc/hostname"), "What is shown?"))
    assert "media folder" in refused.value.message and refused.value.code == "invalid_url"


def test_greedy_answer_equals_streamproc_chat(client, tiny_model_dir, tmp_path, capsys):
    picture = tmp_path / "photo.jpg"
    picture.write_bytes(jpeg_bytes(test_image(7)))
    question = "What is in the picture?"
    capsys.readouterr()
    status = cli_main(["chat", "--model", str(tiny_model_dir), "--image", str(picture), "-p", question,
                       "--max-new-tokens", "8"])
    assert status == 0
    printed = capsys.readouterr().out.split("model> ", 1)[1].strip()
    answer = ask(client, user(image_part(data_url(test_image(7))), question), max_tokens=8)
    # the data: URL carries the same JPEG bytes as the file, so the model sees the same pixels
    assert answer.choices[0].message.content == printed


@pytest.mark.parametrize(
    "change, status, code, param",
    [
        ({"model": "gpt-4o"}, 404, "model_not_found", "model"),
        ({"messages": user(image_part("data:image/png;base64,iVBORw0KGgoAAAA="), "What?")}, 400, "invalid_image",
         "messages[0].content[0]"),  # a PNG cut short: refused from its header, naming the part
        ({"messages": user(image_part("data:image/png;base64,@@@"), "What?")}, 400, "invalid_image", None),
        ({"messages": user(image_part("https://example.com/cat.jpg"), "What?")}, 400, "invalid_url", None),
        ({"max_tokens": 100_000}, 400, "context_length_exceeded", "max_tokens"),
        ({"messages": user("word " * 5000)}, 400, "context_length_exceeded", "messages"),
        ({"n": 2}, 400, "unsupported_value", "n"),
        ({"messages": [{"role": "tool", "content": "x"}]}, 400, None, "messages[0].role"),
    ],
)
def test_errors_have_openai_shape_and_status(client, change, status, code, param):
    request = {"model": MODEL, "messages": user("Hello"), "max_tokens": 2, **change}
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(**request)
    error = raised.value
    assert error.status_code == status
    assert set(error.body) == {"message", "type", "param", "code"} and error.body["message"]
    assert error.body["type"] == "invalid_request_error"
    if code:
        assert error.code == code
    if param:
        assert error.body["param"] == param


def test_sampling_is_honoured_with_a_seed(client):
    messages = user("Tell me a story.")
    def sampled(seed):
        return client.chat.completions.create(model=MODEL, messages=messages, temperature=1.0, top_p=0.9,
                                              seed=seed, max_tokens=8).choices[0].message.content

    assert sampled(3) == sampled(3)
    assert len({sampled(seed) for seed in (1, 2, 3, 4)}) > 1  # random words from a random model: they differ


def test_stop_strings_end_the_answer(client):
    messages = user("Describe a quiet street.")
    full = ask(client, messages, max_tokens=12).choices[0].message.content
    words = full.split()
    assert len(words) >= 3, full
    stop = words[2]
    cut = ask(client, messages, max_tokens=12, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == full[: full.index(stop)]
    streamed = "".join(c.choices[0].delta.content or "" for c in ask(client, messages, max_tokens=12, stop=stop,
                                                                       stream=True) if c.choices)
    assert streamed == cut.choices[0].message.content


def test_api_key_is_required(server):
    wrong = openai.OpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        wrong.models.list()
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
    from tests.support.service import http_get

    assert http_get(f"{server.root}/metrics")[0] == 401  # metrics too, unless --public-metrics
    assert KEY not in server.log()


def test_sigterm_stops_the_server_with_exit_0(tiny_model_dir, tmp_path):
    import signal

    with serve_process(tmp_path, ["--model", str(tiny_model_dir)]) as served:
        with urllib.request.urlopen(f"{served.root}/v1/models", timeout=10) as response:
            assert b'"id":"%s"' % tiny_model_dir.name.encode() in response.read()  # the folder's name, not its path
        served.process.process.send_signal(signal.SIGTERM)
        assert served.process.process.wait(30) == 0
    log = served.log()
    assert "SIGTERM" in log and "server stopped" in log and "Traceback" not in log


def test_listening_beyond_loopback_needs_a_key(tiny_model_dir, capsys):
    code = cli_main(["serve", "--model", str(tiny_model_dir), "--host", "0.0.0.0", "--api-key-env", "NO_SUCH_KEY_VAR"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "NO_SUCH_KEY_VAR" in err[0] and "--allow-anonymous" in err[0]


def test_full_queue_answers_429_with_retry_after(client, server):
    """--queue-size 0: while the one engine is busy, the next request is refused at once."""
    done = {}
    long = threading.Thread(target=lambda: done.setdefault("r", ask(client, user("Go on."), max_tokens=400)))
    long.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{server.root}/healthz") as response:
                if b'"busy":1' in response.read():
                    break
            time.sleep(0.01)
        with pytest.raises(openai.RateLimitError) as refused:
            ask(client, user("Me too."), max_tokens=2)
        assert int(refused.value.response.headers["retry-after"]) >= 1
        assert refused.value.code == "queue_full"
    finally:
        long.join(120)
    assert done["r"].usage.completion_tokens >= 1
    samples = scrape(server.port, key=KEY)
    assert metric(samples, "streamproc_serve_rejected_total") >= 1
    assert metric(samples, "streamproc_serve_requests_total", route="chat.completions", status="429") >= 1
    assert metric(samples, "streamproc_serve_completion_tokens_total") >= 1


def test_log_has_no_message_content(client, server):
    ask(client, user("The secret phrase is purple-giraffe."), max_tokens=2)
    log = server.log()
    assert "POST /v1/chat/completions 200" in log
    assert "purple-giraffe" not in log


def test_a_client_that_leaves_mid_stream_frees_its_engine(client, server):
    import http.client
    import json

    body = {"model": MODEL, "messages": user("Go on and on."), "max_tokens": 3000, "stream": True}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request("POST", "/v1/chat/completions", body=json.dumps(body),
                       headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    response = connection.getresponse()
    assert response.status == 200
    while b'"content"' not in response.readline():
        pass
    connection.close()  # gone after the first event
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "client_gone" not in server.log():
        time.sleep(0.1)
    assert "client_gone" in server.log()

    def idle() -> bool:
        with urllib.request.urlopen(f"{server.root}/healthz") as health:
            return b'"busy":0' in health.read()

    deadline = time.monotonic() + 5  # 3000 tokens would take far longer: generation stopped
    while not idle():
        assert time.monotonic() < deadline, "the engine was not given back"
        time.sleep(0.05)
    assert ask(client, user("Still there?"), max_tokens=2).usage.completion_tokens >= 1
