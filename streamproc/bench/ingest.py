"""`streamproc bench ingest`: seconds of video ingested per CPU second, side by side (by default on
a generated 1080p30 H.264 clip; --clip measures any clip, by its own duration).

Methods, each in its own process over the same clip:
  full    PyAV decodes every frame, nothing else (the classic bound)
  nonref  PyAV decodes with skip_frame=NONREF, nothing else (the bound for a 1 fps sampler)
  ours    streamproc's VideoSource: 1 fps, scaled to the model size in the decoder, RGB arrays out
  seed    qwen_vl_utils.fetch_video (fps 1, max_pixels 672*896/4) + transformers' Qwen2.5-VL video
          processor: the seed project's path (needs the `hf` and `seed` extras)
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .measure import Measurement, cpu_seconds, run_worker

METHODS = ("full", "nonref", "ours", "seed")
WORKER = "streamproc.bench.ingest"


def make_clip(path: Path, duration_s: float) -> Path:
    if not path.exists():
        from ..samples import write_video

        tmp = path.with_suffix(".tmp.mp4")
        write_video(tmp, duration_s=duration_s, fps=30, width=1920, height=1080, gop=60, bitrate=4_000_000)
        tmp.rename(path)
    return path


def clip_info(path: Path) -> dict:
    """What the clip is, read from its container: duration, size, rate, codec, bit rate."""
    import av

    from ..errors import MediaError

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video track")
            stream = container.streams.video[0]
            duration = container.duration / 1_000_000 if container.duration else 0.0
            if not duration and stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            if not duration:  # no duration in the container: count the packets' time
                last = 0.0
                for packet in container.demux(stream):
                    if packet.pts is not None and packet.time_base:
                        last = max(last, float((packet.pts + (packet.duration or 0)) * packet.time_base))
                duration = last
            rate = stream.average_rate or stream.guessed_rate
            return {
                "duration_s": float(duration),
                "width": stream.codec_context.width,
                "height": stream.codec_context.height,
                "fps": float(rate) if rate else 0.0,
                "codec": stream.codec_context.name,
                "bit_rate": container.bit_rate or stream.bit_rate or 0,
                "b_frames": bool(stream.codec_context.has_b_frames),
            }
    except av.error.FFmpegError as error:
        raise MediaError(f"{path}: not a readable video ({error})") from None


def describe_clip(info: dict) -> str:
    rate = f"{info['fps']:.3g} fps " if info["fps"] else ""
    bits = f", ~{info['bit_rate'] / 1e6:.1f} Mbit/s" if info["bit_rate"] else ""
    return (f"{info['duration_s']:.1f} s of {info['width']}x{info['height']} {rate}{info['codec'].upper()}{bits}"
            f"{', B-frames' if info['b_frames'] else ''}")


def _work(method: str, path: str) -> dict:
    """Run one method over the clip in this process; returns what it measured."""
    import av

    if method in ("full", "nonref"):
        start_cpu, start_wall = cpu_seconds(), time.perf_counter()
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_type = "SLICE"
            if method == "nonref":
                stream.codec_context.skip_frame = "NONREF"
            frames = sum(1 for _ in container.decode(stream))
    elif method == "ours":
        from ..config.ingest import SamplingConfig, SourceConfig
        from ..ingest.sources import VideoSource

        source = VideoSource(SourceConfig(name="bench", path=Path(path)), SamplingConfig())
        start_cpu, start_wall = cpu_seconds(), time.perf_counter()
        frames = sum(1 for _ in source.frames())
    elif method == "seed":
        import os

        os.environ.setdefault("FORCE_QWENVL_VIDEO_READER", "decord")
        from qwen_vl_utils import fetch_video
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        processor = Qwen2VLVideoProcessor()
        start_cpu, start_wall = cpu_seconds(), time.perf_counter()
        video = fetch_video({"video": path, "fps": 1.0, "max_pixels": 672 * 896 // 4})
        inputs = processor(videos=[video], return_tensors="pt", do_resize=False)
        frames = int(video.shape[0])
        assert inputs["pixel_values_videos"].shape[0] > 0
    else:
        raise ValueError(f"unknown method {method}")
    return {"cpu_s": cpu_seconds() - start_cpu, "wall_s": time.perf_counter() - start_wall, "frames": frames}


def run(clip: Path, duration_s: float, repeats: int, methods=METHODS, progress=print, generate: bool = True) -> dict:
    """Measure each method on `clip`. With generate=True a missing clip is made, `duration_s`
    long; the rates are always computed from the clip's own duration."""
    if generate:
        make_clip(clip, duration_s)
    info = clip_info(clip)
    duration_s = info["duration_s"]
    results = {}
    for method in methods:
        measurement = Measurement(method)
        for attempt in range(repeats):
            try:
                measurement.runs.append(run_worker(WORKER, [method, str(clip)]))
            except Exception as exc:  # a missing optional extra must not sink the other rows
                measurement.error = str(exc)
                break
            progress(f"  {method} run {attempt + 1}/{repeats}: {measurement.runs[-1]['cpu_s']:.2f} CPU s")
        results[method] = measurement
    return {"clip": str(clip), "duration_s": duration_s, "info": info, "measurements": results}


def table(report: dict) -> str:
    duration = report["duration_s"]
    rows = report["measurements"]
    lines = [
        "| method | frames out | CPU s (median) | wall s | video s per CPU s | CPU vs `ours` |",
        "|---|---|---|---|---|---|",
    ]
    ours_cpu = rows["ours"].median("cpu_s") if rows.get("ours") and rows["ours"].runs else None
    for name, m in rows.items():
        if not m.runs:
            lines.append(f"| {name} | - | - | - | - | not run: {m.error} |")
            continue
        cpu, wall = m.median("cpu_s"), m.median("wall_s")
        ratio = f"{cpu / ours_cpu:.2f}x" if ours_cpu else "-"
        lines.append(f"| {name} | {m.runs[0]['frames']} | {cpu:.2f} | {wall:.2f} | {duration / cpu:.1f} | {ratio} |")
    if ours_cpu:
        for base in ("nonref", "full", "seed"):
            if rows.get(base) and rows[base].runs:
                lines.append(f"\n`ours` / `{base}` CPU: **{ours_cpu / rows[base].median('cpu_s'):.2f}x**")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(json.dumps(_work(sys.argv[1], sys.argv[2])) + "\n")  # the worker protocol: one JSON line
