"""The parts of `caption --gate` that need no video: unchanged spans in SRT/WebVTT, the gate
choice per file, the savings line, the manifest."""
from __future__ import annotations

import json

import pytest

from streamproc.config import config_from_data
from streamproc.config.sinks import UnchangedCues
from streamproc.events import caption_event, unchanged_event
from streamproc.batch.captioner import LONG_RECORDING_S, FileOutcome, GateChoice, GateSavings, choose_gate
from streamproc.batch.manifest import Manifest, replay_jsonl
from streamproc.sinks.captions import UNCHANGED_TEXT, CaptionFileSink
from tests.support.segments import make_result, make_segment


def write(tmp_path, kinds, unchanged=UnchangedCues.CUE):
    sink = CaptionFileSink(tmp_path, ["jsonl", "srt", "vtt"], stems={"cam": "cam"}, unchanged=unchanged)
    sink.start()
    for index, kind in enumerate(kinds):
        segment = make_segment("cam", index, duration=10.0)
        sink.handle(caption_event(segment, make_result(f"caption {index}")) if kind == "c"
                    else unchanged_event(segment, 0.2, "unchanged"))
    sink.stop()
    return {fmt: (tmp_path / f"cam.{fmt}").read_text() for fmt in ("jsonl", "srt", "vtt")}


def test_a_run_of_unchanged_segments_is_one_cue(tmp_path):
    files = write(tmp_path, "cuuucuu")
    srt = files["srt"]
    assert srt.count(UNCHANGED_TEXT) == 2 and srt.count(" --> ") == 4
    assert f"00:00:10,000 --> 00:00:40,000\n{UNCHANGED_TEXT}" in srt
    assert f"00:00:50,000 --> 00:01:10,000\n{UNCHANGED_TEXT}" in srt  # the span at the end, written at close
    assert f"00:00:10.000 --> 00:00:40.000\n{UNCHANGED_TEXT}" in files["vtt"]
    kinds = [json.loads(line)["type"] for line in files["jsonl"].splitlines()]
    assert kinds == ["caption", "unchanged", "unchanged", "unchanged", "caption", "unchanged", "unchanged"]


def test_or_no_cue_at_all(tmp_path):
    files = write(tmp_path, "cuuuc", UnchangedCues.NONE)
    assert UNCHANGED_TEXT not in files["srt"] and files["srt"].count(" --> ") == 2
    assert files["jsonl"].count('"type":"unchanged"') == 3


def test_the_gate_is_on_for_long_recordings_or_when_asked():
    config = config_from_data({})
    assert choose_gate(GateChoice.AUTO, LONG_RECORDING_S - 1, config) is None
    assert choose_gate(GateChoice.AUTO, LONG_RECORDING_S, config) is not None
    assert choose_gate(GateChoice.ON, 5, config) is not None
    assert choose_gate(GateChoice.OFF, 10 * LONG_RECORDING_S, config) is None
    gated = config_from_data({"gate": {"mode": "scene_change", "heartbeat_s": 120}})
    gate = choose_gate(GateChoice.AUTO, 5, gated)  # the config asks for the gate: short files too
    assert gate is not None and gate.config.heartbeat_s == 120


def test_savings_line():
    outcomes = [FileOutcome(None, "done", gated=True, described=4, unchanged=36, model_s=20.0, unchanged_media_s=720.0),
                FileOutcome(None, "done", gated=False, described=10, model_s=100.0),
                FileOutcome(None, "skipped", gated=True, unchanged=99)]
    savings = GateSavings.of(outcomes)
    assert savings.saved_s == pytest.approx(180.0)
    assert savings.line() == ("gate: 36 of 40 segments unchanged (12 min 00 s of video), not described: "
                              "about 3 min 00 s of model time saved, 5.0 s per described segment")
    assert GateSavings.of(outcomes[1:2]) is None


def test_manifest_and_replay(tmp_path):
    video = tmp_path / "a.mp4"
    video.write_bytes(b"x")
    manifest = Manifest(tmp_path / "out")
    assert not manifest.is_done(video, "a", ["jsonl"])
    manifest.record(video, "a", ["jsonl"], stores=["/s.sqlite"])
    (tmp_path / "out" / "a.jsonl").write_text(
        caption_event(make_segment("a", 0), make_result("x")).to_json() + "\n{not json\n"
        + json.dumps({"type": "caption", "image": "p.png"}) + "\n")
    again = Manifest(tmp_path / "out")
    assert again.is_done(video, "a", ["jsonl"]) and not again.is_done(video, "a", ["jsonl", "srt"])
    assert again.stores(video) == ["/s.sqlite"]
    video.write_bytes(b"changed")
    assert not again.is_done(video, "a", ["jsonl"])

    class Collect:
        def __init__(self):
            self.events = []

        def handle(self, event):
            self.events.append(event)

    sink = Collect()
    assert replay_jsonl(tmp_path / "out" / "a.jsonl", [sink]) == 1 and sink.events[0].type == "caption"
