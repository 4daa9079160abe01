"""What a test does when a prerequisite (a Debian package, the Sophgo runtime) is missing:
skip with the reason, or fail under STREAMPROC_TEST_STRICT=1 (`make test`, CI), so a broken
install cannot pass by skipping."""
from __future__ import annotations

import os

import pytest

STRICT = os.environ.get("STREAMPROC_TEST_STRICT", "") not in ("", "0")


def unavailable(reason: str) -> None:
    """Skip, or in strict runs fail, because `reason`."""
    if STRICT:
        pytest.fail(f"{reason} (STREAMPROC_TEST_STRICT=1 turns this skip into a failure)", pytrace=False)
    pytest.skip(reason)
