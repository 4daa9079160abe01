"""The web view of a running pipeline (a file read at camera pace, the tiny model, the caption
store, alert attachments), in a real headless browser: no console errors; a camera's caption
within seconds of the service describing it; an alert with its snapshot loaded and its clip
playable; a search that finds a caption; summaries; pause/resume from the page. The port has an
API key: the page asks for it once, then everything above works with it.

Screenshots of every page go to $STREAMPROC_SCREENSHOT_DIR when it is set (docs/web/ holds the
ones made this way), else to the test's temporary folder."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from streamproc.config import config_from_data  # noqa: E402
from streamproc.app import App  # noqa: E402
from tests.support.browser import browser, console_errors  # noqa: E402,F401 - fixture
from tests.support.service import service_config, wait_until  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.hf, pytest.mark.slow, pytest.mark.timeout(240)]


def wait_js(driver, script: str, timeout: float = 20.0):
    value = wait_until(lambda: driver.execute_script(script), timeout, 0.1)
    assert value, f"the page never got there: {script}"
    return value


def shoot(driver, tmp_path: Path, name: str) -> None:
    folder = Path(os.environ.get("STREAMPROC_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / f"{name}.png"))


@pytest.fixture
def service(tmp_path, make_video, tiny_model_dir):
    video = make_video(duration_s=300, fps=2, width=320, height=240, gop=4)
    data = service_config(
        tiny_model_dir,
        [{"name": "front-door", "path": str(video), "realtime": True}],
        sinks={"attachments": {"dir": str(tmp_path / "attachments")}},
        http={"enabled": True, "host": "127.0.0.1", "port": 0, "api_key": "page-key"},
    )
    data["rules"] = [{"name": "anything", "pattern": r"\S"}]  # the tiny model says something: raised at once
    data["store"] = {"enabled": True, "path": str(tmp_path / "captions.sqlite")}
    data["summaries"] = [{"every": "5s", "window": "1h", "max_new_tokens": 8, "context_tokens": 2048}]
    data["web"] = {"control": True}
    pipeline = App(config_from_data(data))
    pipeline.start()
    try:
        yield pipeline, f"http://127.0.0.1:{pipeline.http.port}"
    finally:
        pipeline.stop(timeout_s=10)


def test_the_site_in_a_browser(service, browser, tmp_path):
    pipeline, base = service
    browser.get(base + "/")
    wait_js(browser, "return !document.getElementById('view-key').hidden")
    browser.find_element("id", "key-input").send_keys("page-key")
    browser.find_element("css selector", "#key-form button").click()
    wait_js(browser, "return document.getElementById('live').textContent == 'live'")
    card = "document.querySelector('article[data-camera=\"front-door\"]')"

    # A caption on the camera card within seconds of the service describing it.
    assert wait_until(lambda: pipeline.stats()["described"] >= 1, 60), pipeline.stats()
    described_at = time.monotonic()
    caption = wait_js(browser, f"const c = {card}.querySelector('.caption').textContent; "
                               "return c != 'no caption yet' && c", timeout=10)
    assert time.monotonic() - described_at < 10
    wait_js(browser, f"const i = {card}.querySelector('img.snapshot'); return i && i.complete && i.naturalWidth > 0")
    assert "online" in browser.execute_script(f"return {card}.textContent") or pipeline.stats()
    shoot(browser, tmp_path, "cameras")

    # The camera's timeline: captions, and the alert with its snapshot and a playable clip.
    browser.get(base + "/#camera/front-door")
    wait_js(browser, "return document.querySelectorAll('#timeline li.caption').length >= 1")
    wait_js(browser, "return document.querySelector('#timeline li.alert')", timeout=30)
    wait_js(browser, "const i = document.querySelector('img.alert-snapshot'); return i && i.complete && i.naturalWidth > 0")
    state = wait_js(browser, "const v = document.querySelector('video.alert-clip'); return v && v.readyState >= 2 && v.readyState")
    assert state >= 2
    assert "anything: ON" in browser.execute_script("return document.getElementById('camera-rules').textContent")
    shoot(browser, tmp_path, "timeline")

    # Search finds a word of a stored caption, highlighted.
    words = [w for w in re.findall(r"[A-Za-z]{3,}", caption)]
    assert words, f"no searchable word in {caption!r}"
    browser.get(base + "/#search")
    box = browser.find_element("id", "search-q")
    box.send_keys(words[0])
    browser.find_element("css selector", "#search-form button").click()
    wait_js(browser, "return document.querySelectorAll('#search-results li').length >= 1")
    marked = browser.execute_script("return [...document.querySelectorAll('#search-results mark')].map(m => m.textContent)")
    assert any(m.lower().startswith(words[0][:3].lower()) for m in marked), marked
    shoot(browser, tmp_path, "search")

    # The latest summaries (one every 5 s here), live: the page reloads them when one is published.
    browser.get(base + "/#summaries")
    wait_js(browser, "return document.querySelectorAll('#summaries li.summary').length > 0", timeout=60)
    assert "front-door" in browser.execute_script("return document.getElementById('summaries').textContent")
    shoot(browser, tmp_path, "summaries")

    # Pause from the page (control is on, behind the key), then resume.
    browser.get(base + "/")
    wait_js(browser, "return document.querySelector('button.control[data-action=\"pause\"]')")
    # found and clicked in one step: a live event may re-render the card between two WebDriver calls
    browser.execute_script("document.querySelector(\"button.control[data-action='pause']\").click()")
    assert wait_until(lambda: pipeline.control.is_paused("front-door"), 10)
    wait_js(browser, "return document.querySelector('button.control[data-action=\"resume\"]')")
    browser.execute_script("document.querySelector(\"button.control[data-action='resume']\").click()")
    assert wait_until(lambda: not pipeline.control.is_paused("front-door"), 10)

    # Phone width: nothing scrolls sideways, on every page.
    browser.set_window_size(360, 740)
    for name, hash_ in (("cameras-360", ""), ("timeline-360", "#camera/front-door"), ("search-360", "#search")):
        browser.get(base + "/" + hash_)
        wait_js(browser, "return document.querySelector('main section:not([hidden])').childElementCount > 0")
        time.sleep(0.5)
        inner, scroll = browser.execute_script("return [window.innerWidth, document.documentElement.scrollWidth]")
        assert scroll <= inner, f"{name}: {scroll} px wide at {inner} px"
        shoot(browser, tmp_path, name)

    errors = console_errors(browser)
    assert all(" 401 " in e or "(Unauthorized)" in e for e in errors), errors  # only the first, that asked
    assert "page-key" not in browser.page_source
