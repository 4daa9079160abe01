"""`streamproc demo`: the whole pipeline on embedded defaults, on a fresh machine.

It generates a sample video, then ingests and segments it. (The model and MQTT stages join
as they land.)
"""
from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_DIR = Path.home() / ".cache" / "streamproc" / "demo"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the pipeline end to end on a generated sample video",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  streamproc demo\n  streamproc demo --workdir /tmp/demo --duration 40",
    )
    parser.add_argument("--workdir", type=Path, default=DEFAULT_DIR, help=f"where samples go (default {DEFAULT_DIR})")
    parser.add_argument("--duration", type=float, default=45.0, help="sample video length in seconds")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..config import config_from_data
    from ..ingest.segmenter import DEFAULT_SEQ_LENGTH, segment_stream, segmenter_for
    from ..ingest.sources import VideoSource
    from ..samples import write_video

    args.workdir.mkdir(parents=True, exist_ok=True)
    video = args.workdir / f"sample-{int(args.duration)}s.mp4"
    if not video.exists():
        print(f"writing a {args.duration:.0f} s sample video: {video}")
        write_video(video, duration_s=args.duration, fps=30, width=640, height=480, gop=60)
    config = config_from_data({"sources": [{"name": "sample", "path": str(video)}]})
    source = VideoSource(config.sources[0], config.sampling)
    seq_length = config.segmenting.seq_length or DEFAULT_SEQ_LENGTH
    segmenter = segmenter_for(source.name, config.sampling, config.segmenting, seq_length)
    for segment in segment_stream(source.items(), segmenter):
        height, width = segment.frame_size
        print(
            f"segment {segment.index}: {segment.start:6.1f}-{segment.end:6.1f} s, {len(segment.frames)} frames "
            f"of {width}x{height}{' (last)' if segment.last else ''}"
        )
    return 0
