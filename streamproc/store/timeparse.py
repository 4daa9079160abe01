"""Times on the command line and in the HTTP API: `30m`, `2h`, `7d` (that long ago), `now`,
`today`, `yesterday`, ISO dates and times (with or without an offset) and Unix seconds.

Everything is resolved to UTC epoch seconds, which is what the store keeps. A time without an
offset, `today` and `yesterday` are read in the given time zone (default: the machine's).
Output is ISO 8601 with the zone's offset, so it is never ambiguous.
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Optional

from ..config.store import parse_duration
from ..errors import UsageError

_AGO = re.compile(r"^\s*\d+(\.\d+)?\s*[smhdw]\s*$", re.IGNORECASE)
_EPOCH = re.compile(r"^\s*\d{9,11}(\.\d+)?\s*$")
MIN_TS, MAX_TS = 0.0, 253402300799.0  # 1970-01-01 .. 9999-12-31T23:59:59 UTC


def zone(name: Optional[str]) -> tzinfo:
    """A time zone by IANA name (`Europe/Berlin`), `UTC`, or None for the machine's local zone."""
    if not name:
        return datetime.now().astimezone().tzinfo  # type: ignore[return-value]
    if name.upper() in ("UTC", "Z"):
        return timezone.utc
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception:
        raise UsageError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin, or UTC)") from None


def parse_when(text: str, *, tz: Optional[tzinfo] = None, now: Optional[float] = None, end: bool = False) -> float:
    """UTC epoch seconds for `text`. `end` makes a whole day (`today`, `yesterday`, `2026-11-29`)
    mean its end instead of its start, as --until expects. A time before 1970 or after the year
    9999 is a UsageError (one line), never an overflow deep in SQLite or datetime."""
    try:
        ts = _parse(text, tz or zone(None), time.time() if now is None else now, end)
    except (OverflowError, OSError):  # OSError: the platform's localtime() refuses the value
        ts = float("nan")
    if not MIN_TS <= ts <= MAX_TS:  # NaN fails this too
        raise UsageError(f"the time {text.strip()[:40]!r} is out of range (1970 to 9999)")
    return ts


def _parse(text: str, tz: tzinfo, now: float, end: bool) -> float:
    value = text.strip()
    lowered = value.lower()
    if lowered == "now":
        return now
    if _AGO.match(value):
        return now - parse_duration(lowered)
    if lowered in ("today", "yesterday"):
        midnight = datetime.fromtimestamp(now, tz).replace(hour=0, minute=0, second=0, microsecond=0)
        day = midnight - timedelta(days=1) if lowered == "yesterday" else midnight
        return _day_bound(day, end)
    if _EPOCH.match(value):
        return float(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"cannot read the time {text!r}: use 30m, 2h, 7d, today, yesterday, an ISO time "
            "(2026-11-29T14:00, with an optional offset) or Unix seconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    if len(value) == 10:  # a date alone: the whole day
        return _day_bound(parsed, end)
    return parsed.timestamp()


def _day_bound(day: datetime, end: bool) -> float:
    if not end:
        return day.timestamp()
    tz = day.tzinfo
    following = (day.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=tz)  # wall-clock day, DST-safe
    return following.timestamp()


def iso(ts: float, tz: Optional[tzinfo] = None) -> str:
    """`2026-11-29T14:03:12+01:00` (seconds precision) in `tz` (default: the machine's zone)."""
    return datetime.fromtimestamp(ts, tz or zone(None)).isoformat(timespec="seconds")


def clock(ts: float, tz: Optional[tzinfo] = None, with_date: bool = True) -> str:
    """A short human time for summaries: `2026-11-29 14:03` or `14:03:12`."""
    moment = datetime.fromtimestamp(ts, tz or zone(None))
    return moment.strftime("%Y-%m-%d %H:%M") if with_date else moment.strftime("%H:%M:%S")
