"""The caption store when it is damaged, and times out of range: `search` and `summarize` print
one line and exit with the README's code (6: the store is a sink; 2: a bad time), the HTTP API
answers 503 / 400 and the port goes on serving; summaries work with the openai backend, which
has no local tokenizer (token counts are estimated)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from streamproc.cli import main
from streamproc.config.http import HttpConfig
from streamproc.config.openai import OpenAIBackendConfig
from streamproc.config.store import StoreConfig
from streamproc.backends.base import create_backend
from streamproc.events import Event
from streamproc.http import HttpServer, build_app
from streamproc.store.sink import StoreSink
from streamproc.store.api import store_routes
from streamproc.store.summarize import Summarizer
from streamproc.store.timeparse import zone
from tests.support.service import write_config
from tests.unit.test_openai_backend import Scripted
from tests.unit.test_store import T0, caption

WORDS = ["courier", "parcel", "bicycle", "heron", "umbrella", "tractor", "lantern", "gate"]


def filled(path, count: int = 400):
    sink = StoreSink(StoreConfig(enabled=True, path=path))
    sink.start()
    for i in range(count):
        text = f"a {WORDS[i % len(WORDS)]} near the {WORDS[(i * 3) % len(WORDS)]} number {i} " + "x" * 200
        data = caption(i, text, start=T0 + i * 20)
        sink.handle(Event("caption", data["id"], "porch", data))
    assert sink.flush(20)
    sink.stop()
    return path


@pytest.fixture
def corrupt(tmp_path):
    """A store whose data pages are overwritten with garbage (its header and schema intact)."""
    path = filled(tmp_path / "s.sqlite")
    data = bytearray(path.read_bytes())
    page = 4096
    for start in range(8 * page, len(data) - page, 2 * page):
        data[start + 8:start + page] = b"\xa5" * (page - 8)
    path.write_bytes(bytes(data))
    return path


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert "Traceback" not in captured.err and len(lines) == 1, captured.err
    return lines[0]


def test_search_on_a_corrupt_store_is_one_line_and_exit_6(corrupt, capsys):
    code = main(["search", "--store", str(corrupt), "courier", "--limit", "200"])
    line = one_line_error(capsys)
    assert code == 6 and "caption store" in line and "damaged" in line


def test_summarize_on_a_corrupt_store_is_one_line_and_exit_6(corrupt, tmp_path, capsys):
    config = write_config(tmp_path, {"backend": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
                                     "store": {"enabled": True, "path": str(corrupt)}})
    code = main(["summarize", "--config", str(config), "--since", str(T0 - 1), "--until", str(T0 + 86400)])
    assert code == 6 and "caption store" in one_line_error(capsys)


def test_a_file_that_is_not_a_store(tmp_path, capsys):
    path = tmp_path / "notes.sqlite"
    path.write_bytes(b"these are my notes, not a database" * 100)
    assert main(["search", "--store", str(path), "x"]) == 6
    assert "caption store" in one_line_error(capsys)


@pytest.mark.parametrize("when", ["99999999999999999999d", "0001-01-01", "9999-12-31"])
def test_times_out_of_range_are_one_line_and_exit_2(tmp_path, capsys, when):
    path = filled(tmp_path / "s.sqlite", 3)
    code = main(["search", "--store", str(path), "courier", "--since", "1h", "--until", when])  # 9999-12-31: its end
    assert code == 2 and "out of range" in one_line_error(capsys)
    if when != "9999-12-31":  # whose start is in range
        assert main(["search", "--store", str(path), "courier", "--since", when]) == 2
        assert "out of range" in one_line_error(capsys)


def test_the_api_answers_503_for_a_corrupt_store_and_400_for_a_bad_time_and_goes_on(corrupt, tmp_path):
    good = filled(tmp_path / "good.sqlite", 3)
    routes = store_routes(corrupt)
    app = build_app(routes, HttpConfig())
    with HttpServer(app) as server:
        def get(path):
            try:
                with urllib.request.urlopen(server.url + path, timeout=10) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        status, body = get("/api/search?q=courier&limit=200")
        assert status == 503 and "damaged" in body["error"]
        assert get("/api/summaries")[0] in (200, 503)
        status, body = get("/api/search?q=courier&since=99999999999999999999d")
        assert status == 400 and "out of range" in body["error"]
        app.router.routes[:] = store_routes(good)  # the port is still up and serves the next store
        assert get("/api/search?q=courier")[0] == 200


def test_summaries_with_the_openai_backend_and_no_tokenizer(tmp_path):
    rows = [{"event_id": f"porch@{i}", "kind": "caption", "source": "porch", "start": T0 + i * 30,
             "end": T0 + i * 30 + 20, "text": f"a {WORDS[i % len(WORDS)]} passes by " + "y" * 300} for i in range(40)]
    with Scripted([]) as server:
        backend = create_backend(OpenAIBackendConfig(base_url=server.url, model="remote-vl", seq_length=2048))
        try:
            summary = Summarizer(backend, context_tokens=1024, max_new_tokens=32, tz=zone("UTC")).summarize(
                rows, start=T0, end=T0 + 1200, who="porch")
        finally:
            backend.close()
    maps = [s for s in summary.steps if s.level == 0]
    assert len(maps) > 1 and summary.steps[-1].level > 0  # chunked by the estimate, then reduced
    assert sorted(i for s in maps for i in s.items) == sorted(r["event_id"] for r in rows)
    assert all(s.prompt_tokens + s.answer_tokens <= 1024 for s in summary.steps)
    assert summary.text.startswith("A cat sits.") and "Based on 40 stored entries" in summary.text
    assert len(server.requests) == len(summary.steps)


def test_summarize_cli_with_the_openai_backend(tmp_path, capsys):
    path = filled(tmp_path / "s.sqlite", 12)
    with Scripted([]) as server:
        config = write_config(tmp_path, {"backend": {"type": "openai", "base_url": server.url, "model": "remote-vl"},
                                         "store": {"enabled": True, "path": str(path)}})
        code = main(["summarize", "--config", str(config), "--since", str(T0 - 1), "--until", str(T0 + 3600),
                     "--tz", "UTC"])
    out = capsys.readouterr().out
    assert code == 0 and "A cat sits." in out and "Based on 12 stored entries" in out
