"""The web view's page in a real headless browser, against the hub and routes on a real HTTP
server (no pipeline): no console errors, live captions and snapshots, the timeline, 360 px,
read-only by default and control behind the API key."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from streamproc.events import alert_event, caption_event
from streamproc.service.http import HttpServer
from streamproc.web.hub import SiteHub
from streamproc.web.routes import mount
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


@pytest.fixture
def site(request):
    options = getattr(request, "param", {})
    hub = SiteHub(["front-door", "yard"], rules=["person"])
    control = Control()
    http = HttpServer("127.0.0.1", 0)
    mount(http, hub, stats=lambda: {"sources": {"front-door": {"queued": 2, "dropped": 5}}}, control=control,
          **options)
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
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers or {})
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


@pytest.mark.parametrize("site", [{"allow_control": True, "api_key": "s3cret"}], indirect=True)
def test_control_needs_the_api_key(site, browser):
    hub, base, control = site
    assert post(base + "/api/cameras/yard/pause")[0] == 401
    assert post(base + "/api/cameras/yard/pause", {"Authorization": "Bearer wrong"})[0] == 401
    assert post(base + "/api/cameras/nope/pause", {"X-API-Key": "s3cret"})[0] == 404
    assert post(base + "/api/cameras/yard/pause", {"Authorization": "Bearer s3cret"}) == (
        200, {"source": "yard", "paused": True})
    assert control.calls == [("pause", "yard")]
    browser.get(base + "/")
    wait_for(browser, "return document.querySelectorAll('button.control').length == 2")
    assert "s3cret" not in browser.page_source
