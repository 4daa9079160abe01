"""A real headless browser for the web-view tests: Debian's chromium driven by selenium through
Debian's chromedriver (tests/support/install_system_deps.sh installs both; selenium is a dev
extra). Nothing is downloaded: the driver path is given, so selenium's manager is not used.

`console_errors(driver)` returns the page's console errors (SEVERE entries of the browser log),
which the tests require to be empty."""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Iterator

import pytest

from .prerequisites import unavailable

CHROMIUM = os.environ.get("STREAMPROC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("STREAMPROC_CHROMEDRIVER", "/usr/bin/chromedriver")


def _require() -> None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        unavailable("selenium is not installed (pip install 'streamproc[dev]')")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) or shutil.which(path)):
            unavailable(f"{path} is missing (apt-get install chromium chromium-driver)")


def make_driver(width: int = 1280, height: int = 900):
    _require()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="streamproc-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver._streamproc_profile = profile  # type: ignore[attr-defined]
    return driver


def close_driver(driver) -> None:
    profile = getattr(driver, "_streamproc_profile", None)
    try:
        driver.quit()
    finally:
        if profile:
            shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


@pytest.fixture
def browser() -> Iterator[object]:
    driver = make_driver()
    try:
        yield driver
    finally:
        close_driver(driver)
