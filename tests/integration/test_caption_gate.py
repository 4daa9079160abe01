"""`streamproc caption` with the scene-change gate and the caption store, through the real command
line (the model is tests/support/fast_backend.py: the tiny model's real input builder, a canned
answer after STREAMPROC_TEST_CALL_S seconds).

The recording is a generated camera scene (streamproc/bench/scenes.py) with known truth: twelve
minutes of a static yard, in which a person walks in and out, a door opens and closes and an
object is left. The gate must describe the segments where those happen and no static stretch;
the files say "[no change]" over the static spans; the summary line says what the gate saved;
then `search` finds a caption of the recording in the store and `summarize --since 1h` sums it up.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from streamproc.bench.scenes import Event, Scene
from tests.support import fast_backend
from tests.support.cli_runs import run_cli, write_yaml

pytestmark = pytest.mark.integration

DURATION_S = 720  # long: the gate is on by default from 600 s
SEGMENT_S = 10
EVENTS = [Event("person", 150, duration=6, stay=20, x=0.4), Event("door", 400, duration=4, x=0.2, until=430),
          Event("object", 600, x=0.6)]
# the segments (start seconds) where something happens, and the first one (nothing to compare with)
EXPECTED_DESCRIBED = [0, 150, 170, 180, 400, 430, 600]


def write_scene(path: Path, scene: Scene, duration_s: float, fps: float = 1.0) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = scene.width, scene.height, "yuv420p"
        stream.options = {"preset": "veryfast", "g": "30", "crf": "30"}
        for _, image in scene.frames(0.0, int(duration_s * fps), fps):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gate-recording")
    return write_scene(folder / "yard.mp4", Scene(height=180, width=320, noise=2.0, seed=3, events=EVENTS), DURATION_S)


def config(tmp_path: Path, model: Path, **sections) -> Path:
    data = {
        "sampling": {"fps": 1.0, "max_pixels": "112x112", "video_area_factor": 1.0},
        "segmenting": {"seq_length": 256, "max_duration_s": SEGMENT_S},
        "backend": {"type": "hf", "model": str(model), "device": "cpu", "dtype": "float32"},
        "generation": {"max_new_tokens": 8},
        **sections,
    }
    return write_yaml(tmp_path / "batch.yaml", data)


def events_of(jsonl: Path) -> list[dict]:
    return [json.loads(line) for line in jsonl.read_text().splitlines()]


def test_long_recording_gated_then_searched_and_summarized(recording, tiny_model_dir, tmp_path):
    store = tmp_path / "archive.sqlite"
    cfg = config(tmp_path, tiny_model_dir, store={"enabled": True, "path": str(store)})
    out = tmp_path / "out"
    done = run_cli(["caption", str(recording), "--config", str(cfg), "--out", str(out)], env={"STREAMPROC_TEST_CALL_S": "0.1"})
    assert done.rc == 0, done.describe()
    # the gate was on by default (a 12 minute recording) and said what it saved
    line = done.stdout.strip().splitlines()[-1]
    match = re.search(r"gate: (\d+) of (\d+) segments unchanged \((\d+) min (\d+) s of video\), not described: "
                      r"about (?:(\d+) min )?(\d+) s of model time saved", line)
    assert match, line
    unchanged, total = int(match[1]), int(match[2])
    assert total == DURATION_S // SEGMENT_S and unchanged == total - len(EXPECTED_DESCRIBED), line
    saved = int(match[5] or 0) * 60 + int(match[6])
    assert saved >= unchanged * 0.1 * 0.9, line  # each skipped segment would have cost a 0.1 s call
    assert f"stored in {store}" in line

    events = events_of(out / "yard.jsonl")
    described = [e["segment"]["start"] for e in events if e["type"] == "caption"]
    assert described == EXPECTED_DESCRIBED  # the events, and nothing of the static stretches
    assert len([e for e in events if e["type"] == "unchanged"]) == unchanged
    srt = (out / "yard.srt").read_text()
    assert "00:00:10,000 --> 00:02:30,000\n[no change]" in srt  # one cue over the static span
    runs = 1 + sum(b != a + SEGMENT_S for a, b in zip(EXPECTED_DESCRIBED, EXPECTED_DESCRIBED[1:]))
    assert srt.count("[no change]") == runs  # one span after each run of described segments
    assert "00:10:10.000 --> 00:12:00.000\n[no change]" in (out / "yard.vtt").read_text()

    found = run_cli(["search", "person", "--store", str(store), "--json"], fast=False)
    assert found.rc == 0, found.describe()
    hits = json.loads(found.stdout)["hits"]
    assert hits and {h["source"] for h in hits} == {"yard"} and {h["kind"] for h in hits} == {"caption"}
    assert {h["media_start"] for h in hits} <= set(map(float, EXPECTED_DESCRIBED))

    summary = run_cli(["summarize", "--since", "1h", "--config", str(cfg), "--source", "yard", "--json"])
    assert summary.rc == 0, summary.describe()
    result = json.loads(summary.stdout)
    assert result["entries"] == len(EXPECTED_DESCRIBED), result  # the captions (unchanged spans say nothing)
    assert result["text"].startswith(fast_backend.ANSWER) and "Based on 7 stored entries from yard" in result["text"]


def test_no_gate_and_no_cue(recording, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    done = run_cli(["caption", str(recording), "--config", str(config(tmp_path, tiny_model_dir)), "--out", str(out),
                    "--no-gate", "--format", "jsonl,srt"])
    assert done.rc == 0, done.describe()
    assert "gate:" not in done.stdout
    assert len([e for e in events_of(out / "yard.jsonl") if e["type"] == "caption"]) == DURATION_S // SEGMENT_S

    gated = tmp_path / "gated"
    done = run_cli(["caption", str(recording), "--config", str(config(tmp_path, tiny_model_dir)), "--out", str(gated),
                    "--unchanged", "none", "--format", "jsonl,srt"])
    assert done.rc == 0, done.describe()
    srt = (gated / "yard.srt").read_text()
    assert "[no change]" not in srt and srt.count(" --> ") == len(EXPECTED_DESCRIBED)
    assert any(e["type"] == "unchanged" for e in events_of(gated / "yard.jsonl"))  # JSONL has them all the same


def test_short_clips_are_not_gated_unless_asked(make_video, tiny_model_dir, tmp_path):
    clip = make_video(duration_s=30, fps=2, width=160, height=120)
    cfg = config(tmp_path, tiny_model_dir)
    auto = run_cli(["caption", str(clip), "--config", str(cfg), "--out", str(tmp_path / "a")])
    assert auto.rc == 0 and "gate:" not in auto.stdout, auto.describe()
    forced = run_cli(["caption", str(clip), "--config", str(cfg), "--out", str(tmp_path / "b"), "--gate"])
    assert forced.rc == 0 and "gate: " in forced.stdout, forced.describe()


def test_images_are_resumed_and_earlier_files_reach_a_new_store(make_video, tiny_model_dir, tmp_path):
    from PIL import Image
    import numpy as np

    picture = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(picture)
    clip = make_video(duration_s=6, fps=2, width=160, height=120)
    cfg = config(tmp_path, tiny_model_dir)
    out = tmp_path / "out"
    args = ["caption", str(clip), str(picture), "--config", str(cfg), "--out", str(out)]
    first = run_cli(args)
    assert first.rc == 0 and first.stdout.strip().splitlines()[-1].startswith("2 captioned"), first.describe()
    manifest = json.loads((out / "streamproc-captions.json").read_text())
    assert str(picture.resolve()) in manifest and manifest[str(picture.resolve())]["image"] is True

    again = run_cli(args)
    assert again.stdout.strip().splitlines()[-1].startswith("0 captioned"), again.describe()
    assert "2 skipped (done before)" in again.stdout

    # a store asked for later: the video's events come from its JSONL (no model), the image is redone
    store = tmp_path / "later.sqlite"
    late = run_cli([*args, "--store", str(store)])
    assert late.rc == 0, late.describe()
    assert "1 captioned" in late.stdout and "1 skipped (done before)" in late.stdout, late.stdout
    found = run_cli(["search", "person", "--store", str(store), "--json"], fast=False)
    sources = {h["source"] for h in json.loads(found.stdout)["hits"]}
    assert sources == {clip.stem, "photo"}, found.stdout
