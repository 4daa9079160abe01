"""A real headless browser for the web-view tests (streamproc/bench/browser.py starts it: Debian's
chromium and chromedriver, which tests/support/install_system_deps.sh installs, and selenium, a
dev extra). A missing browser skips, or fails in strict runs."""
from __future__ import annotations

from typing import Iterator

import pytest

from streamproc.bench.browser import close_driver, console_errors, make_driver, missing  # noqa: F401

from .prerequisites import unavailable


@pytest.fixture
def browser() -> Iterator[object]:
    reason = missing()
    if reason:
        unavailable(reason)
    driver = make_driver()
    try:
        yield driver
    finally:
        close_driver(driver)
