"""The web view's page in a real headless browser, against the hub and routes on the real HTTP
stack (no pipeline): no console errors, live captions and snapshots, the timeline, 360 px,
read-only by default; with an API key the page asks for it once and then works (feed, snapshots,
timeline, control), and without the key every API route answers 401."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from streamproc.config.http import HttpConfig
from streamproc.events import alert_event, caption_event
from streamproc.http import HttpServer, build_app
from streamproc.store.api import store_routes
from streamproc.web.hub import SiteHub
from streamproc.attachments.plugin import attachment_routes
from streamproc.web.routes import web_routes
from tests.support.browser import browser, console_errors  # noqa: F401 - fixture
from tests.support.segments import make_result, make_segment

pytestmark = pytest.mark.timeout(120)


class Control:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def pause(self, source: str) -> None:
        self.calls.append(("pause", source))

    def resume(self, source: str) -> None:
        self.calls.append(("resume", source))


KEY = "page-key-5d1e"


class NoFiles:
    def read(self, url_path):
        return None


@pytest.fixture
def site(request, tmp_path):
    options = dict(getattr(request, "param", {}))
    keys = options.pop("keys", [])
    hub = SiteHub(["front-door", "yard"], rules=["person"])
    control = Control()
    routes = web_routes(hub, stats=lambda: {"sources": {"front-door": {"queued": 2, "dropped": 5}}},
                        control=control, **options)
    routes += store_routes(tmp_path / "none.sqlite", lambda: False) + attachment_routes(NoFiles())
    http = HttpServer(build_app(routes, HttpConfig(api_key=keys)))
    http.start()
    try:
        yield hub, f"http://127.0.0.1:{http.port}", control
    finally:
        hub.stop()
        http.stop()


def wait_for(driver, script: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for: {script}"
        time.sleep(0.1)


def post(url: str, headers: dict | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=b"{}", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_page_shows_a_caption_and_its_snapshot_live_without_console_errors(site, browser):
    hub, base, _ = site
    browser.get(base + "/")
    wait_for(browser, "return document.querySelectorAll('article.card').length == 2")
    wait_for(browser, "return document.getElementById('live').textContent == 'live'")
    card = "document.querySelector('article[data-camera=\"front-door\"]')"
    assert "queue 2 · dropped 5" in browser.execute_script(f"return {card}.textContent")
    segment = make_segment("front-door", 3, size=(112, 168))
    hub.handle(caption_event(segment, make_result("A courier leaves a parcel & rings <twice>.")))
    text = wait_for(browser, f"return {card}.querySelector('.caption').textContent.includes('courier') && "
                             f"{card}.querySelector('.caption').textContent")
    assert text == "A courier leaves a parcel & rings <twice>."  # text, not markup
    width = wait_for(browser, f"const i = {card}.querySelector('img.snapshot'); "
                              "return i && i.complete && i.naturalWidth")
    assert width == 168
    assert console_errors(browser) == []


def test_timeline_lists_captions_and_alerts_newest_first(site, browser):
    hub, base, _ = site
    for index in range(3):
        hub.handle(caption_event(make_segment("yard", index), make_result(f"caption number {index}")))
    segment = make_segment("yard", 2)
    hub.handle(alert_event(rule="person", kind="question", source="yard", segment=segment, transition="raised",
                           verdict="yes", reason="someone at the gate"))
    browser.get(base + "/#camera/yard")
    wait_for(browser, "return document.querySelectorAll('#timeline li').length == 4")
    classes = browser.execute_script("return [...document.querySelectorAll('#timeline li')].map(li => li.className)")
    assert classes[0].startswith("alert") and classes[1:] == ["caption"] * 3
    assert "person: ON" in browser.execute_script("return document.getElementById('camera-rules').textContent")
    hub.handle(caption_event(make_segment("yard", 3), make_result("caption number 3")))
    wait_for(browser, "return document.querySelector('#timeline li').textContent.includes('caption number 3')")
    assert console_errors(browser) == []


def test_page_is_usable_at_360_px(site, browser):
    hub, base, _ = site
    hub.handle(caption_event(make_segment("front-door", 0, size=(112, 168)), make_result("x" * 300)))
    browser.set_window_size(360, 800)
    browser.get(base + "/")
    wait_for(browser, "return document.querySelectorAll('article.card').length == 2")
    inner = browser.execute_script("return window.innerWidth")
    scroll = browser.execute_script("return document.documentElement.scrollWidth")
    assert scroll <= inner, f"the page scrolls sideways at {inner} px ({scroll} px wide)"
    card_width = browser.execute_script("return document.querySelector('article.card').getBoundingClientRect().width")
    assert card_width <= inner


def test_read_only_by_default(site):
    hub, base, control = site
    status, body = post(base + "/api/cameras/yard/pause")
    assert status == 403 and "web.control" in body["error"]
    assert control.calls == []


def get(url: str, headers: dict | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            if response.headers["Content-Type"].startswith("text/event-stream"):
                return response.status  # the feed: do not read it to its end
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


WITH_KEY = [{"allow_control": True, "keys": [KEY]}]
API_ROUTES = ["/api/site", "/api/cameras", "/api/cameras/yard/snapshot.jpg", "/api/cameras/yard/timeline",
              "/api/events", "/api/search?q=x", "/api/summaries", "/attachments/yard/x.jpg"]


@pytest.mark.parametrize("site", WITH_KEY, indirect=True)
def test_without_the_key_every_api_route_answers_401(site):
    hub, base, control = site
    for path in API_ROUTES:
        assert get(base + path) == 401, path
        assert get(base + path, {"Authorization": "Bearer wrong"}) == 401, path
    assert post(base + "/api/cameras/yard/pause")[0] == 401
    assert control.calls == []
    assert get(base + "/") == 200 and get(base + "/static/app.js") == 200  # the page's shell holds no data
    assert get(base + "/api/site", {"Authorization": f"Bearer {KEY}"}) == 200
    assert get(base + "/api/events", {"X-API-Key": KEY}) == 200


def give_key(browser, key: str) -> None:
    wait_for(browser, "return !document.getElementById('view-key').hidden")
    browser.find_element("id", "key-input").send_keys(key)
    browser.find_element("css selector", "#key-form button").click()


@pytest.mark.parametrize("site", WITH_KEY, indirect=True)
def test_with_a_key_the_page_asks_once_then_works(site, browser):
    hub, base, control = site
    browser.get(base + "/")
    give_key(browser, "not-the-key")
    note = wait_for(browser, "const n = document.getElementById('key-note'); "
                             "return !document.getElementById('view-key').hidden && n.textContent.includes('refused') "
                             "&& n.textContent")
    assert "refused" in note
    give_key(browser, KEY)
    wait_for(browser, "return document.querySelectorAll('article.card').length == 2")
    wait_for(browser, "return document.getElementById('live').textContent == 'live'")
    card = "document.querySelector('article[data-camera=\"front-door\"]')"
    hub.handle(caption_event(make_segment("front-door", 3, size=(112, 168)), make_result("a heron on the fence")))
    wait_for(browser, f"return {card}.querySelector('.caption').textContent == 'a heron on the fence'")
    width = wait_for(browser, f"const i = {card}.querySelector('img.snapshot'); return i && i.complete && i.naturalWidth")
    assert width == 168  # the snapshot, fetched with the key

    browser.refresh()  # a reload: the tab keeps the key, nothing is asked
    wait_for(browser, "return document.querySelectorAll('button.control').length == 2")
    assert browser.execute_script("return document.getElementById('view-key').hidden") is True
    browser.get(base + "/#camera/front-door")
    wait_for(browser, "return document.querySelectorAll('#timeline li').length >= 1")
    assert browser.execute_script("return document.getElementById('view-key').hidden") is True
    browser.get(base + "/")
    button = "document.querySelector('article[data-camera=\"yard\"] button.control')"
    wait_for(browser, f"return {button}")
    browser.execute_script(f"{button}.click()")  # in one step: the cards are re-rendered by every event
    wait_for(browser, "return document.querySelector('article[data-camera=\"yard\"] button.control')"
                      ".dataset.action == 'resume'")
    assert control.calls == [("pause", "yard")]
    assert KEY not in browser.page_source
    errors = console_errors(browser)
    assert all(" 401 " in e or "(Unauthorized)" in e for e in errors), errors  # only the refusals that asked


@pytest.mark.parametrize("site", WITH_KEY, indirect=True)
def test_control_needs_the_key_in_a_header(site):
    hub, base, control = site
    assert post(base + "/api/cameras/yard/pause", {"Authorization": "Bearer wrong"})[0] == 401
    assert post(base + "/api/cameras/nope/pause", {"X-API-Key": KEY})[0] == 404
    assert post(base + "/api/cameras/yard/pause", {"Authorization": f"Bearer {KEY}"}) == (
        200, {"source": "yard", "paused": True})
    assert control.calls == [("pause", "yard")]


def test_the_event_feed_never_starves_other_requests(site, caplog):
    """More browsers on the feed than the server has worker threads (40): other requests still
    answer, subscribers beyond the cap get 503, and browsers that leave log no traceback."""
    import http.client

    hub, base, _ = site
    hub.max_subscribers = 60
    port = int(base.rsplit(":", 1)[1])
    feeds = []
    try:
        for _ in range(60):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/api/events")
            response = connection.getresponse()
            assert response.status == 200
            feeds.append(connection)
        assert hub.subscriber_count() == 60
        assert get(base + "/api/events") == 503
        assert get(base + "/api/cameras") == 200
        hub.handle(caption_event(make_segment("yard", 1, size=(112, 168)), make_result("still answering")))
        assert get(base + "/api/cameras/yard/snapshot.jpg") == 200
    finally:
        for connection in feeds:
            connection.close()
    assert wait_for_count(hub, 0)
    assert "Traceback" not in caplog.text and "Error" not in caplog.text


def wait_for_count(hub: SiteHub, count: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while hub.subscriber_count() != count and time.monotonic() < deadline:
        time.sleep(0.05)
    return hub.subscriber_count() == count
