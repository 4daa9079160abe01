"""A headless Chromium for `streamproc bench web` and the web-view tests: Debian's chromium and
chromedriver, driven by selenium (a dev extra). The driver path is given, so selenium never
downloads one; the flags keep Chromium off the network (background services, QUIC, sync)."""
from __future__ import annotations

import os
import shutil
import tempfile

from ..errors import UsageError

CHROMIUM = os.environ.get("STREAMPROC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("STREAMPROC_CHROMEDRIVER", "/usr/bin/chromedriver")


def missing() -> str | None:
    """Why a browser cannot be started here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'streamproc[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) or shutil.which(path)):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


def make_driver(width: int = 1280, height: int = 900):
    reason = missing()
    if reason:
        raise UsageError(reason)
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
    """The page's console errors (SEVERE entries of the browser log)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
