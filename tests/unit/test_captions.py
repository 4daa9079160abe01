"""Caption files (parsed with the `srt` and `webvtt-py` libraries), the stdout sink, and the
sink factory."""
from __future__ import annotations

import datetime as dt
import html
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import srt
import webvtt

from streamproc.config.rules import RuleConfig
from streamproc.config.sinks import SinksConfig
from streamproc.rules.alerts import RuleEngine
from streamproc.sinks import create_sinks
from streamproc.bus import Plugin as Sink
from streamproc.sinks.captions import CaptionFileSink, cue_text, timestamp
from streamproc.events import caption_event, stats_event, status_event, validate
from streamproc.sinks.stdout import StdoutSink
from tests.support.segments import make_result, make_segment

REPO = Path(__file__).resolve().parents[2]
TEXTS = [
    "A car parks in front of the gate.",
    "Two people talk.\n\nOne of them --> points at the door.",  # a blank line and an arrow
    "",  # the model said nothing
    "Ein Radfahrer fährt vorbei; 自行车.",
]


def seconds(value) -> float:
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    hours, minutes, rest = value.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


def write_captions(out: Path, formats, *, stems=None, duration=20.0, offset=0):
    sink = CaptionFileSink(out, formats, stems=stems)
    sink.start()
    events = []
    for i, text in enumerate(TEXTS):
        segment = make_segment("cam1", offset + i, duration=duration)
        events.append(caption_event(segment, make_result(text)))
        sink.handle(events[-1])
    return sink, events


def test_srt_and_webvtt_parse_and_match_segment_times(tmp_path):
    sink, events = write_captions(tmp_path, ["srt", "vtt", "jsonl"], stems={"cam1": "garden-2025-01-01"})
    sink.stop()
    srt_path, vtt_path = tmp_path / "garden-2025-01-01.srt", tmp_path / "garden-2025-01-01.vtt"
    subs = list(srt.parse(srt_path.read_text(encoding="utf-8")))
    cues = list(webvtt.read(str(vtt_path)))
    assert len(subs) == len(cues) == len(events)
    for sub, cue, event in zip(subs, cues, events, strict=True):
        segment = event.data["segment"]
        for start, end in ((sub.start, sub.end), (cue.start, cue.end)):
            assert seconds(start) == pytest.approx(segment["start"], abs=0.001)
            assert seconds(end) == pytest.approx(segment["end"], abs=0.001)
        expected = cue_text(event.data["text"])
        assert sub.content == expected and html.unescape(cue.text) == expected  # WebVTT escapes '>'
    assert subs[1].content == "Two people talk.\nOne of them -> points at the door."
    assert subs[2].content == "…"
    assert [s.index for s in subs] == [1, 2, 3, 4]


def test_jsonl_holds_every_caption_and_alert_event(tmp_path):
    sink, events = write_captions(tmp_path, ["jsonl"])
    engine = RuleEngine([RuleConfig(name="car", keywords=["car"])])
    (alert,) = engine.evaluate("cam1", make_segment("cam1", 0), TEXTS[0], {})
    sink.handle(alert)
    sink.handle(status_event("cam1", "online"))  # not part of a transcript
    sink.handle(stats_event({"x": 1}))
    lines = [json.loads(line) for line in (tmp_path / "cam1.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == [e.id for e in events] + [alert.id]
    for line in lines:
        validate(line)
    assert not (tmp_path / "cam1.srt").exists()
    sink.stop()


def test_files_are_valid_before_close_and_a_rerun_overwrites(tmp_path):
    sink, _ = write_captions(tmp_path, ["srt", "vtt"])
    # an interrupted job: nothing closed, yet both files parse completely
    assert len(list(srt.parse((tmp_path / "cam1.srt").read_text(encoding="utf-8")))) == len(TEXTS)
    assert len(webvtt.read(str(tmp_path / "cam1.vtt"))) == len(TEXTS)
    sink.stop()
    sink, _ = write_captions(tmp_path, ["srt"], offset=0)
    sink.stop()
    assert len(list(srt.parse((tmp_path / "cam1.srt").read_text(encoding="utf-8")))) == len(TEXTS)


def test_named_sources_get_valid_files_even_without_segments(tmp_path):
    sink = CaptionFileSink(tmp_path, ["srt", "vtt", "jsonl"], stems={"cam1": "empty-video"})
    sink.start()
    sink.stop()
    assert list(srt.parse((tmp_path / "empty-video.srt").read_text(encoding="utf-8"))) == []
    assert len(webvtt.read(str(tmp_path / "empty-video.vtt"))) == 0
    assert (tmp_path / "empty-video.jsonl").read_text() == ""


def test_long_media_times_and_one_file_set_per_source(tmp_path):
    sink = CaptionFileSink(tmp_path, ["srt", "vtt"])
    sink.start()
    late = make_segment("cam1", 0, start=3 * 3600 + 62.5, duration=20.0)
    sink.handle(caption_event(late, make_result("late")))
    sink.handle(caption_event(make_segment("cam2", 0), make_result("other camera")))
    sink.stop()
    (sub,) = srt.parse((tmp_path / "cam1.srt").read_text(encoding="utf-8"))
    assert sub.start == dt.timedelta(hours=3, seconds=62.5) and sub.content == "late"
    (cue,) = webvtt.read(str(tmp_path / "cam1.vtt"))
    assert cue.start == "03:01:02.500" and cue.end == "03:01:22.500"
    assert webvtt.read(str(tmp_path / "cam2.vtt"))[0].text == "other camera"
    assert sink.paths("cam1") == {"srt": tmp_path / "cam1.srt", "vtt": tmp_path / "cam1.vtt"}


def test_timestamps():
    assert timestamp(0, ",") == "00:00:00,000"
    assert timestamp(3661.2345, ".") == "01:01:01.234" or timestamp(3661.2345, ".") == "01:01:01.235"
    assert timestamp(-1, ",") == "00:00:00,000"


def test_stdout_sink_text_and_json():
    out = io.StringIO()
    sink = StdoutSink("text", stream=out)
    event = caption_event(make_segment("cam1", 1, duration=20.0), make_result("A dog\nbarks."))
    sink.handle(event)
    sink.handle(status_event("cam1", "reconnecting", "rtsp://u:pw@h/x timed out"))
    sink.handle(stats_event({"x": 1}))  # skipped in text mode
    (alert,) = RuleEngine([RuleConfig(name="dog", keywords=["dog"])]).evaluate("cam1", make_segment("cam1", 1), "dog", {})
    sink.handle(alert)
    lines = out.getvalue().splitlines()
    assert lines == [
        "[cam1 00:00:20.000-00:00:40.000] A dog barks.",
        "[cam1] reconnecting (rtsp://u:***@h/x timed out)",
        "[cam1] ALERT dog raised (ON): caption mentions 'dog'",
    ]
    out = io.StringIO()
    StdoutSink("json", stream=out).handle(event)
    assert json.loads(out.getvalue()) == event.to_dict()


def test_create_sinks_builds_what_is_configured(tmp_path):
    config = SinksConfig.model_validate(
        {"files": {"dir": str(tmp_path), "formats": ["srt", "jsonl"]}, "stdout": {"enabled": True, "format": "json"}}
    )
    sinks = create_sinks(config, [], ["cam1"], file_stems={"cam1": "clip"})
    assert [s.name for s in sinks] == ["stdout", "files"]
    assert all(isinstance(s, Sink) for s in sinks)
    assert sinks[1].paths("cam1")["srt"] == tmp_path / "clip.srt"
    assert create_sinks(SinksConfig()) == []
    override = create_sinks(config, files_dir=tmp_path / "other")[1]
    assert override.out_dir == tmp_path / "other"


def test_paho_is_imported_only_when_mqtt_is_configured():
    code = (
        "import sys\n"
        "from streamproc.config.sinks import SinksConfig\n"
        "from streamproc.sinks import create_sinks\n"
        "from streamproc.rules.alerts import RuleEngine\n"
        "create_sinks(SinksConfig.model_validate({'stdout': {'enabled': True}}))\n"
        "assert 'paho' not in sys.modules, 'paho imported'\n"
        "assert 'av' not in sys.modules, 'av imported'\n"
        "(sink,) = create_sinks(SinksConfig.model_validate({'mqtt': {'port': 1}}))\n"
        "assert sink.name == 'mqtt' and 'paho' not in sys.modules  # paho comes with start()\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_sinks_config_checks():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs the mqtt sink"):
        SinksConfig.model_validate({"homeassistant": {"enabled": True}})
    with pytest.raises(ValidationError):
        SinksConfig.model_validate({"mqtt": {"topic_prefix": "a/#"}})
    with pytest.raises(ValidationError):
        SinksConfig.model_validate({"mqtt": {"topic_prefix": "trailing/"}})
    with pytest.raises(ValidationError, match="go together"):
        SinksConfig.model_validate({"mqtt": {"tls": {"cert_file": "c.pem"}}})
    with pytest.raises(ValidationError, match="without username"):
        SinksConfig.model_validate({"mqtt": {"password": "x"}})
    with pytest.raises(ValidationError):
        SinksConfig.model_validate({"mqtt": {"qos": {"captions": 3}}})
    config = SinksConfig.model_validate({"mqtt": {"username": "u", "password": "hunter2", "topic_prefix": "home/cams"}})
    assert "hunter2" not in repr(config) and "hunter2" not in str(config.model_dump())


def test_config_examples_in_the_docs_are_valid():
    import re

    from streamproc.config import config_from_text

    text = (REPO / "docs" / "mqtt.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) == 4
    sources = "sources:\n  - {name: porch, path: a.mp4}\n  - {name: garden, path: b.mp4}\n"
    for block in blocks:
        config = config_from_text(block + sources, env={"MQTT_PASSWORD": "pw", "NTFY_TOKEN": "tk"})
        assert config.sinks is not None
