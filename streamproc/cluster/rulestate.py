"""Rule state (hysteresis counters, cooldowns, ON/OFF) as stored in the cameras KV record.

The record of a camera holds `rules: {rule: RuleState fields}` as of its last committed segment,
with `clock` (that segment's end on the rule clock) and `wall` (when it was written). A box that
takes the camera starts its own media clock near 0, so the saved times are shifted onto it:
a cooldown that had 10 s left on the old box has about 10 s left on the new one.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Optional


def save(engine: Any, camera: str, clock: float) -> dict[str, Any]:
    """The `rules`, `clock` and `wall` fields of a camera record."""
    return {"rules": engine.snapshot(camera), "clock": float(clock), "wall": time.time()}


def restore(engine: Any, camera: str, record: Mapping[str, Any], now: Optional[float] = None) -> int:
    """Load the record's rule states into `engine`; how many rules were restored."""
    states = record.get("rules") or {}
    shift = float(record.get("clock", 0.0)) + max(0.0, (now or time.time()) - float(record.get("wall", now or time.time())))
    shifted = {}
    for rule, fields in states.items():
        fields = dict(fields)
        for key in ("raised_at", "cleared_at"):  # rule clock: the old box's media time
            if fields.get(key) is not None:
                fields[key] = float(fields[key]) - shift
        shifted[rule] = fields
    engine.restore(camera, shifted)
    return len(shifted)
