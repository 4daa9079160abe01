"""`streamproc caption DIR` as a user runs it (a subprocess, the real command line) over a folder of
generated videos with one corrupt file, on the tiny model: outputs for the good files whose cues
are the segments' times, one clear error line for the bad one and exit status 1; a second run
skips what is done and retries only the bad file; --force redoes everything."""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
srt = pytest.importorskip("srt")
webvtt = pytest.importorskip("webvtt")

from streamproc.sinks.captions import wrap_cues  # noqa: E402
from tests.support.service import REPO, write_config  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.hf, pytest.mark.timeout(600)]  # 35 s alone; 300 s at load 20

GOOD = {"walk.mp4": 7, "yard.mkv": 4}  # name: seconds
BAD = "broken.mp4"
FORMATS = ("jsonl", "srt", "vtt")


def caption(inputs: Path, out: Path, config: Path, model: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "streamproc", "caption", str(inputs), "--model", str(model), "--device", "cpu",
        "--config", str(config), "--out", str(out), "--format", ",".join(FORMATS), *extra,
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )


def summary(result: subprocess.CompletedProcess) -> tuple[int, int, int]:
    match = re.search(r"(\d+) captioned .* (\d+) skipped .* (\d+) failed", result.stdout)
    assert match, (result.stdout, result.stderr)
    return tuple(int(n) for n in match.groups())  # type: ignore[return-value]


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("streamproc: error:")]


def seconds_of(stamp: str) -> float:
    """HH:MM:SS.mmm (WebVTT) in seconds."""
    hours, minutes, seconds = stamp.split(":")
    return round(int(hours) * 3600 + int(minutes) * 60 + float(seconds), 3)


def mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix.lstrip(".") in FORMATS}


def captions_of(out: Path, stem: str) -> list[dict]:
    lines = (out / f"{stem}.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["type"] == "caption"]


@pytest.fixture
def videos(tmp_path, make_video) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    for name, seconds in GOOD.items():
        source = make_video(Path(name).suffix, duration_s=seconds, fps=15, width=320, height=240, gop=15, seed=seconds)
        shutil.copy(source, folder / name)
    # A half-copied file: the start of a real video, cut off.
    whole = make_video(".mp4", duration_s=3, fps=15, width=320, height=240)
    (folder / BAD).write_bytes(whole.read_bytes()[:4000])
    return folder


@pytest.fixture
def batch_config(tmp_path) -> Path:
    # Small frames and 2-s segments (the tiny model's max_pixels is 112x224).
    return write_config(
        tmp_path,
        {
            "sampling": {"max_pixels": "112x112", "video_area_factor": 1.0},
            "segmenting": {"seq_length": 256, "max_duration_s": 2},
            "generation": {"max_new_tokens": 8},
        },
        "batch.yaml",
    )


def test_caption_folder_with_a_corrupt_file_then_resume_then_force(tmp_path, videos, batch_config, tiny_model_dir):
    out = tmp_path / "captions"

    # 1. First run: two good files captioned, one clear error, exit 1.
    first = caption(videos, out, batch_config, tiny_model_dir)
    assert first.returncode == 1, first.stderr
    assert summary(first) == (2, 0, 1)
    (error,) = error_lines(first)
    assert BAD in error and "\n" not in error
    assert not any(line.startswith(("Traceback", "  File ")) for line in first.stderr.splitlines())
    stems = [Path(name).stem for name in GOOD]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{stem}.{fmt}" for stem in stems for fmt in FORMATS] + ["streamproc-captions.json"]
    )
    manifest = json.loads((out / "streamproc-captions.json").read_text())
    assert sorted(Path(k).name for k in manifest) == sorted(GOOD)

    for name, seconds in GOOD.items():
        stem = Path(name).stem
        events = captions_of(out, stem)
        segments = [(e["segment"]["start"], e["segment"]["end"]) for e in events]
        # 1 fps, 2-frame segments; an odd last frame is padded, so the last cue ends with the video.
        expected = [(float(s), float(min(s + 2, seconds))) for s in range(0, seconds, 2)]
        assert segments == expected, (stem, segments)
        assert events[-1]["segment"]["last"] and not any(e["segment"]["last"] for e in events[:-1])
        # a caption longer than two lines of 42 characters becomes several timed cues
        cue_list = [c for e in events for c in wrap_cues(e["text"], e["segment"]["start"], e["segment"]["end"])]
        times, texts = [(round(a, 3), round(b, 3)) for a, b, _ in cue_list], [t for _, _, t in cue_list]

        subtitles = list(srt.parse((out / f"{stem}.srt").read_text()))
        assert [(s.start.total_seconds(), s.end.total_seconds()) for s in subtitles] == times
        assert [s.index for s in subtitles] == list(range(1, len(times) + 1))
        assert [s.content for s in subtitles] == texts

        cues = webvtt.read(str(out / f"{stem}.vtt")).captions
        assert [(seconds_of(c.start), seconds_of(c.end)) for c in cues] == times
        assert [c.identifier for c in cues] == [str(i) for i in range(1, len(times) + 1)]
        assert [html.unescape(c.text) for c in cues] == texts
    first_texts = {stem: [e["text"] for e in captions_of(out, stem)] for stem in stems}

    # 2. Second run: the finished files are skipped (untouched), only the bad one is tried again.
    before = mtimes(out)
    second = caption(videos, out, batch_config, tiny_model_dir)
    assert second.returncode == 1, second.stderr
    assert summary(second) == (0, 2, 1)
    (error,) = error_lines(second)
    assert BAD in error
    assert mtimes(out) == before

    # 3. The bad file is replaced by a good one: the next run captions it, and only it.
    (videos / BAD).write_bytes((videos / "yard.mkv").read_bytes())
    third = caption(videos, out, batch_config, tiny_model_dir)
    assert third.returncode == 0, third.stderr
    assert summary(third) == (1, 2, 0)
    assert error_lines(third) == []
    assert all(mtimes(out)[name] == stamp for name, stamp in before.items())
    assert len(captions_of(out, "broken")) == 2

    # 4. --force captions everything again, with the same (greedy, deterministic) text.
    forced = caption(videos, out, batch_config, tiny_model_dir, "--force")
    assert forced.returncode == 0, forced.stderr
    assert summary(forced) == (3, 0, 0)
    after = mtimes(out)
    assert all(after[name] != stamp for name, stamp in before.items())
    for stem in stems:
        assert [e["text"] for e in captions_of(out, stem)] == first_texts[stem]


def test_frames_larger_than_the_model_takes_are_refused_before_any_file(tmp_path, videos, tiny_model_dir):
    # Unset, sampling follows the model; asked for 672x896, it is above the tiny model's 112x224.
    out = tmp_path / "captions"
    command = [sys.executable, "-m", "streamproc", "caption", str(videos), "--model", str(tiny_model_dir),
               "--device", "cpu", "--out", str(out), "--max-pixels", "672x896"]  # fmt: skip
    result = subprocess.run(
        command, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, result.stderr  # a usage problem, not three failed files
    (error,) = error_lines(result)
    assert "sampling.max_pixels (--max-pixels)" in error and "allowed:" in error
    assert not out.exists() or not any(out.iterdir())
