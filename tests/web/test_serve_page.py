"""The web view on `streamproc serve`'s ASGI server (Starlette under uvicorn) over a caption store
that another process filled: the page loads without console errors, says it has no cameras, and
its search finds a stored caption; the store's read API answers on the same port."""
from __future__ import annotations

import json
import urllib.request

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from starlette.applications import Starlette  # noqa: E402

from streamproc.events import caption_event  # noqa: E402
from streamproc.server.launch import ServerThread  # noqa: E402
from streamproc.store.db import CaptionStore  # noqa: E402
from streamproc.web.asgi import starlette_routes, store_router  # noqa: E402
from tests.support.browser import browser, console_errors  # noqa: E402,F401 - fixture
from tests.support.segments import make_result, make_segment  # noqa: E402
from tests.support.service import wait_until  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def served(tmp_path):
    path = tmp_path / "captions.sqlite"
    store = CaptionStore(path)
    texts = ["A delivery van stops at the gate.", "A cat sleeps on the porch.", "The gate opens for a cyclist."]
    store.add_events(caption_event(make_segment("gate", i), make_result(t)).to_dict() for i, t in enumerate(texts))
    store.close()
    app = Starlette(routes=starlette_routes(store_router(path)))
    with ServerThread(app) as server:
        yield f"http://{server.host}:{server.port}"


def test_search_api_and_page_on_the_asgi_server(served, browser):
    with urllib.request.urlopen(served + "/api/search?q=gate", timeout=5) as response:
        hits = json.loads(response.read())["hits"]
    assert sorted(h["text"] for h in hits) == ["A delivery van stops at the gate.", "The gate opens for a cyclist."]
    browser.get(served + "/")
    note = wait_until(lambda: browser.execute_script(
        "const n = document.querySelector('#cameras .note'); return n && n.textContent"), 10)
    assert note and "No cameras run on this server" in note
    browser.get(served + "/#search")
    browser.find_element("id", "search-q").send_keys("cyclist")
    browser.find_element("css selector", "#search-form button").click()
    found = wait_until(lambda: browser.execute_script(
        "return [...document.querySelectorAll('#search-results li')].map(li => li.textContent).join('|')"), 10)
    assert "The gate opens for a cyclist." in found
    assert console_errors(browser) == []


@pytest.mark.integration
@pytest.mark.hf
def test_streamproc_serve_with_a_store_config_serves_the_page(tmp_path, tiny_model_dir):
    """`streamproc serve CONFIG` whose config enables the caption store: the OpenAI API, the store's
    read API and the web view on one port."""
    pytest.importorskip("transformers")
    import yaml

    from tests.support.serve import serve_process

    path = tmp_path / "captions.sqlite"
    store = CaptionStore(path)
    store.add_events([caption_event(make_segment("gate", 0), make_result("A heron lands by the pond.")).to_dict()])
    store.close()
    config = {
        "sources": [{"name": "gate", "path": str(tmp_path / "unused.mp4")}],
        "backend": {"type": "hf", "model": str(tiny_model_dir), "device": "cpu", "dtype": "float32"},
        "store": {"enabled": True, "path": str(path)},
    }
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    with serve_process(tmp_path, [str(tmp_path / "serve.yaml")]) as server:
        with urllib.request.urlopen(server.root + "/api/search?q=heron", timeout=10) as response:
            assert [h["text"] for h in json.loads(response.read())["hits"]] == ["A heron lands by the pond."]
        with urllib.request.urlopen(server.root + "/", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/html") and b"/static/app.js" in response.read()
        with urllib.request.urlopen(server.root + "/v1/models", timeout=10) as response:
            assert json.loads(response.read())["data"]
