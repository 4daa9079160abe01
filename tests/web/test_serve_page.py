"""The web view on `streamproc serve`'s ASGI server (Starlette under uvicorn) over a caption store
that another process filled: the page loads without console errors, says it has no cameras, and
its search finds a stored caption; the store's read API answers on the same port."""
from __future__ import annotations

import json
import urllib.request

import pytest

from streamproc.config.http import HttpConfig
from streamproc.events import caption_event
from streamproc.http import HttpServer, build_app
from streamproc.store.db import CaptionStore
from streamproc.web.asgi import store_site_routes
from tests.support.browser import browser, console_errors  # noqa: F401 - fixture
from tests.support.segments import make_result, make_segment
from tests.support.service import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def served(tmp_path):
    path = tmp_path / "captions.sqlite"
    store = CaptionStore(path)
    texts = ["A delivery van stops at the gate.", "A cat sleeps on the porch.", "The gate opens for a cyclist."]
    store.add_events(caption_event(make_segment("gate", i), make_result(t)).to_dict() for i, t in enumerate(texts))
    store.close()
    app = build_app(store_site_routes(path), HttpConfig())
    with HttpServer(app) as server:
        yield server.url


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
def test_streamproc_serve_with_a_store_config_serves_the_page_behind_its_key(tmp_path, tiny_model_dir):
    """`streamproc serve CONFIG` whose config enables the caption store and sets http.api_key: the
    OpenAI API, the store's read API and the web view on one port, every route but /healthz and
    the page's shell behind the key."""
    pytest.importorskip("transformers")
    import urllib.error

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
        "http": {"api_key": "${SERVE_TEST_KEY}"},
    }
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    key = "serve-page-key-77"
    with serve_process(tmp_path, [str(tmp_path / "serve.yaml")], env={"SERVE_TEST_KEY": key}) as server:
        for route in ("/api/search?q=heron", "/api/summaries", "/api/site", "/api/cameras", "/v1/models", "/metrics"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(server.root + route, timeout=10)
            assert refused.value.code == 401, route
        auth = {"Authorization": f"Bearer {key}"}
        request = urllib.request.Request(server.root + "/api/search?q=heron", headers=auth)
        with urllib.request.urlopen(request, timeout=10) as response:
            assert [h["text"] for h in json.loads(response.read())["hits"]] == ["A heron lands by the pond."]
        with urllib.request.urlopen(server.root + "/", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/html") and b"/static/app.js" in response.read()
        with urllib.request.urlopen(urllib.request.Request(server.root + "/v1/models", headers=auth), timeout=10) as response:
            assert [m["id"] for m in json.loads(response.read())["data"]] == [tiny_model_dir.name]
    assert key not in server.log()
