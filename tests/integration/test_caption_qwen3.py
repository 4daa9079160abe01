"""`streamproc caption` on the tiny Qwen3-VL checkpoint with no size flag: the frame size (32 px
tokens, a quarter of the checkpoint's max_pixels) and the segment length (frame pairs with their
timestamps) come from the model's files alone."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = [pytest.mark.hf, pytest.mark.slow, pytest.mark.cpu_bound]

REPO = Path(__file__).resolve().parents[2]


def test_caption_qwen3_checkpoint_without_size_flags(make_video, tiny_qwen3_dir, tmp_path):
    video = make_video(".mp4", duration_s=6, fps=5, width=320, height=240, seed=9)
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "streamproc", "caption", str(video), "--model", str(tiny_qwen3_dir), "--out", str(out),
         "--max-new-tokens", "4", "--no-progress"],
        capture_output=True, text=True, timeout=900, cwd=REPO, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 captioned" in proc.stdout
    events = [json.loads(line) for line in (out / f"{video.stem}.jsonl").read_text().splitlines()]
    captions = [e for e in events if e["type"] == "caption"]
    assert captions and all(e["text"] for e in captions)
    # 320x240 at a quarter of 128x256 (the tiny checkpoint's max_pixels): 64x96 frames, 2x3 tokens of 32 px.
    first = captions[0]
    assert first["tokens"]["visual"] == first["segment"]["frames"] // 2 * 6
    assert captions[-1]["segment"]["end"] == pytest.approx(6.0)
