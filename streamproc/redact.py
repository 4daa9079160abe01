"""Keep credentials out of logs and events.

PyAV and FFmpeg put the whole URL, password included, into their error messages, so any text that
may carry a URL goes through `redact` before it is logged or published.
"""
from __future__ import annotations

import logging
import re

# scheme://user:password@host -> scheme://user:***@host ; scheme://token@host -> scheme://***@host
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s'\"]+)@")
_SECRET_PARAM = re.compile(r"(?i)([?&](?:password|passwd|pwd|token|secret|auth|key)=)[^&\s'\"]+")


def _mask_userinfo(match: re.Match[str]) -> str:
    user, sep, _ = match.group("userinfo").partition(":")
    return f"{match.group('scheme')}{user}:***@" if sep else f"{match.group('scheme')}***@"


def redact(text: object) -> str:
    """Return `text` with URL passwords and secret query parameters masked."""
    masked = _USERINFO.sub(_mask_userinfo, str(text))
    return _SECRET_PARAM.sub(r"\1***", masked)


class RedactingFilter(logging.Filter):
    """A logging filter that masks credentials in every record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
