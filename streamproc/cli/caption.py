"""`streamproc caption`: caption video files in batch into JSONL / SRT / WebVTT files."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UsageError

EPILOG = """\
examples:
  streamproc caption clip.mp4 --model /path/to/Qwen2.5-VL-3B-Instruct
  streamproc caption videos/ --model Qwen/Qwen2.5-VL-3B-Instruct --out captions --format jsonl,srt,vtt
  streamproc caption 'videos/*.mkv' --bmodel qwen2.5-vl-3b.bmodel --tokenizer qwen2.5-vl-3b/
  streamproc caption videos/ --config configs/batch.yaml      # backend, prompt and rules from a config
  streamproc caption photo.png --model /path/to/Qwen2.5-VL-3B-Instruct   # an image is described as an image

Finished files are recorded in OUT/streamproc-captions.json and skipped by the next run
(--force redoes them). Exit status 0 when every file was captioned or skipped, 1 if any failed.
"""


def add_parser(subparsers) -> None:
    from .common import HelpFormatter

    parser = subparsers.add_parser(
        "caption",
        help="caption video files (batch) into JSONL, SRT and WebVTT",
        description="Caption video files into JSONL, SRT and WebVTT. Frame size and segment length come "
        "from the model (its config files, or the bmodel's nets) unless given.",
        formatter_class=HelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("inputs", nargs="+", metavar="FILE|DIR|GLOB", help="videos, folders of videos, or glob patterns")
    add_model_arguments(parser)
    parser.add_argument("--prompt", help="the question asked for every segment (default: config prompt.user)")
    parser.add_argument("--max-new-tokens", type=int, help="longest caption in tokens (default: 64)")
    parser.add_argument("--seq-length", type=int, help="context to size segments for (default: the model's, else 2048)")
    parser.add_argument("--max-pixels", help="the model's max_pixels, e.g. 672x896; frames use a quarter "
                        "(default: the model's, 672x896 at most)")
    parser.add_argument("--out", type=Path, default=Path("captions"), help="output folder")
    parser.add_argument("--format", default="jsonl,srt,vtt", help="comma-separated: jsonl, srt, vtt")
    parser.add_argument("--force", action="store_true", help="caption files again even if done")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--queue", metavar="nats://HOST:PORT[/NAME]", help="submit one job per file to this NATS "
                        "JetStream queue instead, for `streamproc worker`s on any box; wait, show their progress and "
                        "write the outputs (no model needed here; default: caption here)")
    parser.add_argument("--detach", action="store_true", help="with --queue: submit and exit without waiting")
    parser.set_defaults(func=run)


def add_model_arguments(parser) -> None:
    """The config and model options `build_config` reads (shared with `streamproc worker`)."""
    parser.add_argument("--config", type=Path, help="take backend, prompt, sampling, segmenting and rules from this config")
    parser.add_argument("--model", help="transformers checkpoint folder or hub id (hf backend; needs streamproc[hf])")
    parser.add_argument("--bmodel", type=Path, help="Qwen2.5-VL bmodel (tpu backend)")
    parser.add_argument("--tokenizer", type=Path, help="folder with tokenizer.json for --bmodel (default: beside the bmodel)")
    parser.add_argument("--runtime-dir", type=Path, help="folder with libbmrt.so (default: $STREAMPROC_BMRT_DIR, the SDK)")
    parser.add_argument("--device", default=None, help="hf backend device: auto, cpu or cuda (default: auto)")


def build_config(args):
    from ..config import config_from_data, load_config

    # exclude_unset: what the file leaves out stays unset, so the model's geometry fills it in.
    base = load_config(args.config).model_dump(mode="json", exclude_unset=True) if args.config else {}
    base["sources"] = []
    if args.model and args.bmodel:
        raise UsageError("give --model (transformers) or --bmodel (TPU), not both")
    if args.model:
        base["backend"] = {"type": "hf", "model": args.model, **({"device": args.device} if args.device else {})}
    elif args.bmodel:
        from .chat import tokenizer_beside

        tokenizer = args.tokenizer or tokenizer_beside(args.bmodel)
        backend = {"type": "tpu", "bmodel": str(args.bmodel), "tokenizer": str(tokenizer)}
        if args.runtime_dir:
            backend["runtime_dir"] = str(args.runtime_dir)
        base["backend"] = backend
    if "backend" not in base:
        raise UsageError("say which model to use: --model DIR_OR_HUB_ID, --bmodel FILE --tokenizer DIR, or --config")
    if args.prompt:
        base.setdefault("prompt", {})["user"] = args.prompt
    if args.max_new_tokens:
        base.setdefault("generation", {})["max_new_tokens"] = args.max_new_tokens
    if args.seq_length:
        segmenting = base.setdefault("segmenting", {})
        segmenting.pop("bmodel", None)
        segmenting["seq_length"] = args.seq_length
    if args.max_pixels:
        base.setdefault("sampling", {})["max_pixels"] = args.max_pixels
    base.get("sinks", {}).pop("mqtt", None)  # batch output goes to files
    return config_from_data(base)


def run(args) -> int:
    from ..backends.base import create_backend
    from ..service.batch import expand_inputs
    from ..sinks.captions import FORMATS
    from .common import quiet_simulator_if_used

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UsageError(f"unknown caption format(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(FORMATS)}")
    from ..backends.geometry import fit_to_model

    if args.queue:  # several boxes: streamproc/cluster/jobs.py
        from ..cluster.jobs import Queue, submit_and_collect

        return submit_and_collect(Queue.parse(args.queue), expand_inputs(args.inputs), args.out, formats,
                                  prompt=args.prompt, force=args.force, wait=not args.detach, progress=not args.no_progress)
    config = build_config(args)
    paths = expand_inputs(args.inputs)
    if not paths:
        raise UsageError("no video or image files found in " + " ".join(args.inputs))
    config, _ = fit_to_model(config)  # sizes from the model; a value that does not fit fails now, before weights load
    quiet_simulator_if_used(config)
    from .caption_images import caption_images, is_image

    images = [p for p in paths if is_image(p)]
    videos = [p for p in paths if not is_image(p)]
    backend = create_backend(config.backend)
    try:
        outcomes = _run_with_progress(config, backend, videos, formats, args) if videos else []
        outcomes += caption_images(config, backend, images, args.out, formats)
    finally:
        backend.close()
    done = sum(o.status == "done" for o in outcomes)
    skipped = sum(o.status == "skipped" for o in outcomes)
    failed = [o for o in outcomes if o.status == "failed"]
    for outcome in failed:
        print(f"streamproc: error: {outcome.error}", file=sys.stderr)
    media = sum(o.media_s for o in outcomes)
    seconds = sum(o.seconds for o in outcomes)
    print(
        f"{done} captioned ({media:.0f} s of video in {seconds:.1f} s), {skipped} skipped (done before), "
        f"{len(failed)} failed; outputs in {args.out}"
    )
    return 1 if failed else 0


def _run_with_progress(config, backend, paths, formats, args):
    """One bar over files, and one per file counting described segments out of those planned
    (known up front from the file's duration and frame size)."""
    from tqdm import tqdm

    from ..service.batch import BatchCaptioner

    quiet = args.no_progress or not sys.stderr.isatty()
    overall = tqdm(total=len(paths), desc="files", unit="file", position=0, disable=quiet)
    bars = {}

    def progress(path: Path, done_s: float, total_s: float) -> None:
        if path not in bars:
            total = planned_segments(captioner, path)
            bars[path] = tqdm(total=total, desc=path.name[:30], unit="segment", position=1, leave=False, disable=quiet)

    def file_done(outcome) -> None:
        bar = bars.pop(outcome.path, None)
        if bar is not None:
            bar.close()
        overall.update(1)

    captioner = BatchCaptioner(config, backend, args.out, formats, force=args.force, on_progress=progress)
    describe = captioner.describer.describe

    def counted(segment):
        described = describe(segment)
        bar = next(iter(bars.values()), None)
        if bar is not None:
            if bar.total is not None and bar.n + 1 > bar.total:
                bar.total = bar.n + 1  # the estimate was short (e.g. a duration the container misstates)
            bar.update(1)
        return described

    captioner.describer.describe = counted
    try:
        return captioner.run(paths, on_file=file_done)
    finally:
        overall.close()


def planned_segments(captioner, path: Path):
    """How many segments the file will be cut into (None when its duration is unknown)."""
    import math

    from ..ingest.sampling import model_frame_size
    from ..ingest.segmenter import plan_segments
    from ..service.batch import _duration
    from ..service.planning import prompt_reserve

    config = captioner.config
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            height, width = stream.codec_context.height, stream.codec_context.width
    except Exception:  # the run reports an unreadable file in one line
        return None
    duration = _duration(path)
    if not duration or not height:
        return None
    frame_h, frame_w = model_frame_size(height, width, config.sampling)
    seg = config.segmenting
    reserve = prompt_reserve(config, captioner.backend.inputs, captioner.rules, path.stem)
    plan = plan_segments(captioner.seq_length, frame_h, frame_w, config.sampling.fps, reserve, seg.answer_reserve,
                         seg.overlap_s, seg.max_duration_s, config.sampling.token_pixels, seg.pair_text_tokens)
    frames = max(1, math.floor(duration * config.sampling.fps + 1e-6))
    step = plan.frames - plan.overlap_frames
    return max(1, math.ceil(max(frames - plan.overlap_frames, 1) / step))
