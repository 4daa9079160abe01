"""The event contract: what the service says, its JSON form and its ids.

The contract belongs to no single sink: rules build alert events here, and every consumer (MQTT,
caption files, the caption store, webhooks, a cluster bridge) reads the same objects. This module
imports neither backends nor sinks; a caption is built from any object with a result's fields
(`CaptionResult`).

Every event is one JSON object (UTF-8) with the fields `v` (schema version), `type`, `id`,
`source` and `ts` (wall time it was made), plus fields per type; streamproc/events/event.schema.json
is the contract (docs/mqtt.md explains it).

Ids let consumers deduplicate (the outbox delivers at least once). A caption's id comes from the
source and the segment's start so that re-running a file after a crash gives the same ids. Live
sources restart their media clock at 0 with every process, so their ids use the segment's wall
start time instead (`live=True`), otherwise today's first segment would look like yesterday's.
"""
from __future__ import annotations

import json
import math
import numbers
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal, Mapping, Optional, Protocol

from ..redact import redact

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..frames import Segment


class CaptionTimings(Protocol):
    def as_dict(self) -> Mapping[str, float]: ...


class CaptionResult(Protocol):
    """What a caption event needs from a model's answer (backends' `Result` has these fields)."""

    text: str
    model: str
    prompt_tokens: int
    visual_tokens: int
    generated_tokens: int
    finish_reason: str
    timings: CaptionTimings

SCHEMA_VERSION = 1
EventType = Literal["caption", "alert", "status", "stats", "summary", "unchanged", "service"]
SOURCE_STATES = ("online", "offline", "reconnecting")
SERVICE_STATES = ("loading", "ready", "stopping")


@dataclass(frozen=True)
class Event:
    """One event. `data` is the whole JSON payload; `snapshot` (a representative RGB frame) stays
    in-process for sinks that publish images and is never serialised. `segment` is the segment
    the event is about, set by the bus for its ENRICH plug-ins only (streamproc/bus.py)."""

    type: EventType
    id: str
    source: Optional[str]
    data: dict[str, Any]
    snapshot: Optional["np.ndarray"] = field(default=None, repr=False, compare=False)
    segment: Optional["Segment"] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The one redaction point of events: every builder makes an Event, so no field of any
        # event (a status detail, a stats error, a prompt) can carry a password.
        _redact_strings(self.data)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.to_json())  # a deep copy that is exactly what goes on the wire

    def to_json(self) -> str:
        return json.dumps(self.data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    def to_bytes(self) -> bytes:
        return self.to_json().encode("utf-8")

    @classmethod
    def from_json(cls, text: str | bytes) -> "Event":
        data = json.loads(text)
        return cls(type=data["type"], id=data["id"], source=data.get("source"), data=data)


def _redact_strings(tree: Any) -> None:
    """Redact every string inside `tree` (dicts and lists) in place."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in list(items):
        if isinstance(value, str):
            cleaned = redact(value)
            if cleaned != value:
                tree[key] = cleaned
        elif isinstance(value, (dict, list)):
            _redact_strings(value)


def _num(value: float, digits: int = 3) -> float:
    """JSON has no NaN/inf; a broken timing must not make an event unserialisable."""
    value = float(value)
    return round(value, digits) if math.isfinite(value) else 0.0


def _clean(value: Any) -> Any:
    """A JSON-safe copy of a stats tree: non-finite floats become null, unknown objects strings."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, numbers.Integral):  # numpy integers and the like
        return int(value)
    if isinstance(value, numbers.Real):
        return _clean(float(value))
    return str(value)


def segment_key(segment: "Segment", *, live: bool = False) -> str:
    """The stable part of every id about `segment`: source and start (media ms, or wall ms if live)."""
    if live:
        return f"{segment.source}@{int(round(segment.start_wall * 1000)):013d}"
    return segment.id


def segment_info(segment: "Segment") -> dict[str, Any]:
    return {
        "index": int(segment.index),
        "start": _num(segment.start),
        "end": _num(segment.end),
        "start_wall": _num(segment.start_wall),
        "end_wall": _num(segment.end_wall),
        "frames": len(segment.frames),
        "fps": _num(segment.fps),
        "gap_before": bool(segment.gap_before),
        "last": bool(segment.last),
    }


def _base(type_: str, id_: str, source: Optional[str], now: Optional[float]) -> dict[str, Any]:
    return {"v": SCHEMA_VERSION, "type": type_, "id": id_, "source": source, "ts": _num(now or time.time())}


def caption_event(
    segment: "Segment",
    result: CaptionResult,
    *,
    prompt: Optional[str] = None,
    live: bool = False,
    now: Optional[float] = None,
) -> Event:
    """The caption of one segment: its text, the model, token counts and timings."""
    id_ = segment_key(segment, live=live)
    data = _base("caption", id_, segment.source, now)
    data.update(
        segment=segment_info(segment),
        text=result.text.strip(),
        model=result.model,
        tokens={
            "prompt": int(result.prompt_tokens),
            "visual": int(result.visual_tokens),
            "generated": int(result.generated_tokens),
        },
        finish_reason=result.finish_reason,
        timings={k: _num(v, 6) for k, v in result.timings.as_dict().items()},
    )
    if prompt is not None:
        data["prompt"] = prompt
    frames = segment.frames
    snapshot = frames[len(frames) // 2].image if frames else None
    return Event("caption", id_, segment.source, data, snapshot)


def alert_event(
    *,
    rule: str,
    kind: str,
    source: str,
    segment: "Segment",
    transition: Literal["raised", "cleared"],
    verdict: Literal["yes", "no", "unknown"],
    reason: str,
    question: Optional[str] = None,
    raised_at: Optional[float] = None,
    live: bool = False,
    now: Optional[float] = None,
) -> Event:
    """A rule's state changed on `source` with `segment`: raised (now ON) or cleared (now OFF)."""
    if transition not in ("raised", "cleared"):
        raise ValueError(f"transition must be raised or cleared, not {transition!r}")
    key = segment_key(segment, live=live)
    id_ = f"{key}:{rule}:{transition}"
    data = _base("alert", id_, source, now)
    data.update(
        rule=rule,
        kind=kind,
        transition=transition,
        state="ON" if transition == "raised" else "OFF",
        verdict=verdict,
        reason=reason,
        caption_id=key,
        segment=segment_info(segment),
    )
    if question is not None:
        data["question"] = question
    if raised_at is not None:
        data["raised_at"] = _num(raised_at)
    data["title"], data["summary"] = alert_text(rule, source, transition, verdict, reason, question)
    return Event("alert", id_, source, data)


def alert_text(
    rule: str, source: str, transition: str, verdict: str, reason: str, question: Optional[str] = None
) -> tuple[str, str]:
    """A notification's title and one-sentence summary, from the rule, the camera and the answer's
    reason (no model call): what a phone shows before anyone opens the event."""
    name = rule.replace("_", " ").replace("-", " ")
    title = f"{name.capitalize()} on {source}" if transition == "raised" else f"{name.capitalize()} cleared on {source}"
    why = " ".join(str(reason).split()).rstrip(".")
    if len(why) > _REASON_CHARS:
        why = why[: _REASON_CHARS - 1].rstrip() + "…"
    if not why and question:
        why = f"the model answered {verdict} to \u201c{' '.join(question.split())}\u201d"
    what = "raised" if transition == "raised" else "cleared"
    summary = f"{name.capitalize()} {what} on camera {source}: {why}." if why else f"{name.capitalize()} {what} on camera {source}."
    return title, summary


_REASON_CHARS = 200  # a summary stays one readable sentence


def status_event(source: str, state: str, detail: str = "", *, now: Optional[float] = None) -> Event:
    """A source went online, offline or is reconnecting. `detail` is redacted (it may hold a URL)."""
    if state not in SOURCE_STATES:
        raise ValueError(f"source state must be one of {', '.join(SOURCE_STATES)}, not {state!r}")
    # Status changes are not replayed from media, so a random id is both unique and stable
    # (the outbox stores the serialised event; redelivery carries the same id).
    id_ = f"{source}:status:{uuid.uuid4().hex[:16]}"
    data = _base("status", id_, source, now)
    data.update(state=state, detail=redact(" ".join(str(detail).split())))
    return Event("status", id_, source, data)


def service_event(state: str, loaded: int, of: int, detail: str = "", *, now: Optional[float] = None) -> Event:
    """The service's own state: `loading` (from its first second, with the model backends loaded
    so far), `ready` (describing), `stopping`. Plug-ins start before the model loads, so Home
    Assistant shows a loading box as such rather than as one that is off."""
    if state not in SERVICE_STATES:
        raise ValueError(f"service state must be one of {', '.join(SERVICE_STATES)}, not {state!r}")
    id_ = f"service:{state}:{uuid.uuid4().hex[:16]}"
    data = _base("service", id_, None, now)
    data.update(state=state, model={"loaded": int(loaded), "of": int(of)}, detail=redact(" ".join(str(detail).split())))
    return Event("service", id_, None, data)


def unchanged_event(
    segment: "Segment", score: float, reason: str, live: bool = False, *, now: Optional[float] = None
) -> Event:
    """The scene-change gate skipped `segment`: nothing changed since the last described one, so
    the model did not run. A span for the caption store; `score` is the largest change score seen
    (1 or more would have been a change), `reason` the gate's word for it ("unchanged")."""
    key = segment_key(segment, live=live)
    id_ = f"{key}:unchanged"
    data = _base("unchanged", id_, segment.source, now)
    data.update(segment=segment_info(segment), score=_num(score), reason=str(reason), segment_id=key)
    return Event("unchanged", id_, segment.source, data)


def stats_event(stats: dict[str, Any], *, now: Optional[float] = None) -> Event:
    """Service-wide counters (queues, drops, throughput); `stats` must be JSON-serialisable."""
    id_ = f"stats:{uuid.uuid4().hex[:16]}"
    data = _base("stats", id_, None, now)
    data["stats"] = _clean(stats)
    return Event("stats", id_, None, data)


def summary_event(
    source: str,
    *,
    start: float,
    end: float,
    text: str,
    ranges: list[dict[str, Any]],
    entries: int,
    model: str,
    now: Optional[float] = None,
) -> Event:
    """A text summary of what `source` saw between `start` and `end` (wall, Unix s), made from
    `entries` stored captions/alerts; `ranges` are the spans ({start, end, entries}) it is based on.
    The id is stable per source and window, so a repeated schedule run deduplicates."""
    id_ = f"{source}:summary:{int(round(start * 1000)):013d}-{int(round(end * 1000)):013d}"
    data = _base("summary", id_, source, now)
    data.update(
        start=_num(start), end=_num(end), text=text.strip(), model=model, entries=int(entries),
        ranges=[{"start": _num(r["start"]), "end": _num(r["end"]), "entries": int(r["entries"])} for r in ranges],
    )
    return Event("summary", id_, source, data)


def schema() -> dict[str, Any]:
    """The JSON Schema of every event (draft 2020-12), shipped in the package."""
    text = resources.files(__package__).joinpath("event.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def validate(data: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if `data` is not a valid event (needs jsonschema, a dev extra)."""
    import jsonschema  # only tests and `doctor` validate; the runtime builds valid events

    jsonschema.validate(data, schema(), cls=jsonschema.Draft202012Validator)
