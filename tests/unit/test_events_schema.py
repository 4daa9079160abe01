"""Events: fields from Segment and Result, stable ids, JSON form, and the JSON Schema contract
(including the examples in docs/mqtt.md)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from streamproc.backends.base import Timings
from streamproc.events import (
    Event,
    alert_event,
    caption_event,
    schema,
    stats_event,
    status_event,
    validate,
)
from tests.support.segments import make_result, make_segment

DOCS = Path(__file__).resolve().parents[2] / "docs" / "mqtt.md"


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(schema())


def test_caption_event_carries_segment_result_and_prompt():
    segment = make_segment("cam1", 3, duration=20.0, fps=1.0, wall=1000.0)
    result = make_result("Ein Mann überquert die Straße. 🚶")
    event = caption_event(segment, result, prompt="Describe it.", now=1234.5)
    data = event.to_dict()
    validate(data)
    assert event.type == "caption" and event.source == "cam1" and event.id == segment.id == "cam1:0000060000"
    assert data["segment"] == {
        "index": 3, "start": 60.0, "end": 80.0, "start_wall": 1000.0, "end_wall": 1019.0,
        "frames": 20, "fps": 1.0, "gap_before": False, "last": False,
    }
    assert data["text"] == result.text and data["model"] == "test-model" and data["prompt"] == "Describe it."
    assert data["tokens"] == {"prompt": 420, "visual": 384, "generated": 12}
    assert data["timings"]["total_s"] == 0.61 and data["finish_reason"] == "stop" and data["ts"] == 1234.5
    # UTF-8 on the wire, not \u escapes
    assert "überquert".encode() in event.to_bytes() and "🚶".encode() in event.to_bytes()
    assert Event.from_json(event.to_bytes()).data == data


def test_caption_event_keeps_a_representative_frame_in_process_only():
    segment = make_segment(duration=4.0)
    event = caption_event(segment, make_result())
    assert event.snapshot is segment.frames[2].image and isinstance(event.snapshot, np.ndarray)
    assert "snapshot" not in event.to_json()


def test_ids_are_stable_for_files_and_unique_for_live_sources():
    a = caption_event(make_segment("cam1", 5, wall=100.0), make_result("one"))
    b = caption_event(make_segment("cam1", 5, wall=900.0), make_result("two"))  # a replay after restart
    c = caption_event(make_segment("cam1", 6, wall=100.0), make_result())
    d = caption_event(make_segment("cam2", 5, wall=100.0), make_result())
    assert a.id == b.id == "cam1:0000010000"
    assert len({a.id, c.id, d.id}) == 3
    live1 = caption_event(make_segment("cam1", 0, wall=100.0), make_result(), live=True)
    live2 = caption_event(make_segment("cam1", 0, wall=5000.0), make_result(), live=True)
    assert live1.id == "cam1@0000000100000" and live1.id != live2.id
    validate(live1.data)


def test_broken_timings_still_serialise():
    result = make_result()
    result.timings = Timings(decode_s=float("nan"), total_s=float("inf"))
    data = caption_event(make_segment(), result).to_dict()
    validate(data)
    assert data["timings"]["decode_s"] == 0.0


def test_alert_status_and_stats_events_are_valid():
    segment = make_segment("cam1", 2)
    raised = alert_event(
        rule="fence", kind="question", source="cam1", segment=segment, transition="raised",
        verdict="yes", reason="climbing", question="Is someone climbing?",
    )
    cleared = alert_event(
        rule="fence", kind="question", source="cam1", segment=segment, transition="cleared",
        verdict="no", reason="", raised_at=99.0,
    )
    for event in (raised, cleared):
        validate(event.to_dict())
    assert raised.id == "cam1:0000004000:fence:raised" and raised.data["state"] == "ON"
    assert cleared.data["state"] == "OFF" and cleared.data["raised_at"] == 99.0
    with pytest.raises(ValueError):
        alert_event(rule="r", kind="question", source="s", segment=segment, transition="held", verdict="yes", reason="")

    status = status_event("cam1", "reconnecting", "rtsp://admin:hunter2@10.0.0.5/live?token=abc:\n refused")
    validate(status.to_dict())
    assert "hunter2" not in status.to_json() and "abc" not in status.to_json()
    assert status.data["detail"].startswith("rtsp://admin:***@10.0.0.5/live?token=***") and "\n" not in status.data["detail"]
    assert status_event("cam1", "online").id != status_event("cam1", "online").id
    with pytest.raises(ValueError):
        status_event("cam1", "sleeping")

    stats = stats_event({"fps": 1.5, "queue": np.int64(3), "bad": float("nan"), "nested": {"t": (1, 2)}})
    validate(stats.to_dict())
    assert stats.source is None and stats.data["stats"] == {"fps": 1.5, "queue": 3, "bad": None, "nested": {"t": [1, 2]}}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("id"),
        lambda d: d.update(v=2),
        lambda d: d.update(extra=1),
        lambda d: d["segment"].pop("start"),
        lambda d: d["tokens"].update(prompt=-1),
        lambda d: d.update(type="alert"),
        lambda d: d.update(text=None),
    ],
)
def test_schema_rejects_broken_caption_events(mutate):
    data = caption_event(make_segment(), make_result()).to_dict()
    mutate(data)
    with pytest.raises(jsonschema.ValidationError):
        validate(data)


def test_schema_rejects_inconsistent_alerts():
    data = alert_event(
        rule="fence", kind="question", source="cam1", segment=make_segment(), transition="raised",
        verdict="yes", reason="x",
    ).to_dict()
    data["state"] = "OFF"
    with pytest.raises(jsonschema.ValidationError):
        validate(data)


def test_examples_in_the_docs_are_valid():
    blocks = re.findall(r"```json\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    types = []
    for block in blocks:
        data = json.loads(block)
        validate(data)
        types.append(data["type"])
    assert sorted(types) == ["alert", "caption", "service", "stats", "status", "summary", "unchanged"]


def test_service_events_say_the_state_and_the_model_load():
    from streamproc.events import service_event

    data = service_event("loading", 1, 2, "rtsp://u:secret@cam/x").to_dict()
    validate(data)
    assert (data["state"], data["model"], data["source"]) == ("loading", {"loaded": 1, "of": 2}, None)
    assert "secret" not in data["detail"]
    with pytest.raises(ValueError, match="service state"):
        service_event("booting", 0, 1)
    data["state"] = "booting"
    with pytest.raises(jsonschema.ValidationError):
        validate(data)
