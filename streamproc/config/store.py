"""Config of the caption store (`store:`) and of scheduled summaries (`summaries:`).

See docs/store.md. Durations are written like `90s`, `30m`, `1h`, `7d` (or plain seconds).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from pydantic import Field, field_validator, model_validator

from .base import Section

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: object) -> float:
    """Seconds from `90`, `90s`, `30m`, `2h`, `7d`, `1w`; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30m, 2h or 7d, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration such as 30m, 2h or 7d, got {value!r}")
        seconds = float(match.group(1)) * _UNIT_S[(match.group(2) or "s").lower()]
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


class RetentionConfig(Section):
    """Old rows go first. Both limits are enforced by the store's writer while the service runs."""

    max_age: Optional[float] = Field(30 * 86400.0, description="keep rows this long (e.g. 30d); null = forever")
    max_size_mb: Optional[float] = Field(1024.0, gt=0, description="database size in MiB at most; null = no limit")
    check_every_s: float = Field(60.0, gt=0, description="how often the limits are checked")

    @field_validator("max_age", mode="before")
    @classmethod
    def _age(cls, value: object) -> object:
        return None if value is None else parse_duration(value)


class StoreConfig(Section):
    enabled: bool = Field(False, description="keep captions, alerts and summaries in an SQLite store")
    path: Path = Field(Path("streamproc-captions.sqlite"), description="the SQLite file (WAL mode)")
    retention: RetentionConfig = RetentionConfig()
    queue_size: int = Field(10_000, ge=1, description="events waiting for the writer; more are dropped and counted")
    batch_size: int = Field(500, ge=1, description="rows written per transaction at most")


class SummaryConfig(Section):
    """A summary every `every` of the last `window` (default: `every`) per source, stored and
    published on `<prefix>/<source>/summary`."""

    every: float = Field(..., description="how often, e.g. 1h")
    window: Optional[float] = Field(None, description="how far back each summary looks (default: every)")
    sources: list[str] = Field(default_factory=list, description="sources to summarise; empty = all")
    max_new_tokens: int = Field(256, ge=8, description="answer length of each model call")
    context_tokens: Optional[int] = Field(
        None, ge=256, description="the model's context in tokens (default: the bmodel's sequence length, or 8192)"
    )

    @field_validator("every", "window", mode="before")
    @classmethod
    def _durations(cls, value: object) -> object:
        return None if value is None else parse_duration(value)

    @model_validator(mode="after")
    def _window(self) -> "SummaryConfig":
        if self.window is None:
            self.window = self.every
        return self


def check_summaries(summaries: list[SummaryConfig], store: StoreConfig, sources: set[str]) -> None:
    """Cross-section checks for the root config: summaries read the store and name known sources."""
    if summaries and not store.enabled:
        raise ValueError("summaries need the caption store: set store.enabled: true")
    for index, summary in enumerate(summaries):
        unknown = [s for s in summary.sources if s not in sources]
        if unknown:
            raise ValueError(f"summaries[{index}] names unknown sources: {', '.join(unknown)}")
