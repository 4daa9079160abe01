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
