"""`streamproc caption`: caption video files in batch into JSONL / SRT / WebVTT files."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from ..errors import UsageError

EPILOG = """\
examples:
  streamproc caption clip.mp4 --model /path/to/Qwen2.5-VL-3B-Instruct
  streamproc caption videos/ --model Qwen/Qwen2.5-VL-3B-Instruct --out captions --format jsonl,srt,vtt
  streamproc caption 'videos/*.mkv' --bmodel qwen2.5-vl-3b.bmodel --tokenizer qwen2.5-vl-3b/
  streamproc caption videos/ --config configs/batch.yaml      # backend, prompt and rules from a config
  streamproc caption photo.png --model /path/to/Qwen2.5-VL-3B-Instruct   # an image is described as an image
  streamproc caption nightly.mp4 --config site.yaml --store archive.sqlite   # then: streamproc search --store ...
  streamproc caption long.mkv --model DIR --gate --unchanged none       # skip static stretches, no cue for them

The scene-change gate (the one `run` uses, docs/gate.md) is on for recordings of 10 minutes or
more: a segment that shows nothing new is not described, the outputs say "[no change]" over it
and the summary line says how much model time that saved. --gate forces it on, --no-gate off.

With --store (or a config whose store is enabled) every caption and unchanged span also goes to
the caption store, each file as its own source named like its outputs, for `streamproc search`
and `streamproc summarize`.

Finished files, videos and images, are recorded in OUT/streamproc-captions.json and skipped by the
next run (--force redoes them). Exit status 0 when every file was captioned or skipped, 1 if any failed.
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
    gate = parser.add_mutually_exclusive_group()
    gate.add_argument("--gate", dest="gate", action="store_const", const="on", default="auto",
                      help="skip segments that show nothing new (default: on for recordings of 10 minutes or more)")
    gate.add_argument("--no-gate", dest="gate", action="store_const", const="off", help="describe every segment")
    parser.add_argument("--unchanged", choices=["cue", "none"], default=None,
                        help="SRT/WebVTT over a span the gate skipped: one [no change] cue, or none "
                        "(default: the config's sinks.files.unchanged, cue)")
    parser.add_argument("--store", type=Path, metavar="PATH", help="also write every caption and unchanged span to this "
                        "caption store (default: the config's store, when enabled)")
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
    from ..batch.captioner import expand_inputs
    from ..sinks.captions import FORMATS

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UsageError(f"unknown caption format(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(FORMATS)}")
    if args.queue:  # several boxes: streamproc/cluster/jobs.py
        from ..cluster.jobs import Queue, submit_and_collect

        if args.store is not None or args.gate != "auto" or args.unchanged is not None:
            raise UsageError("--store, --gate, --no-gate and --unchanged are not passed to queue workers yet: "
                             "caption here, without --queue, to use them")

        return submit_and_collect(Queue.parse(args.queue), expand_inputs(args.inputs), args.out, formats,
                                  prompt=args.prompt, force=args.force, wait=not args.detach, progress=not args.no_progress)
    from ..backends.geometry import fit_to_model

    config = build_config(args)
    paths = expand_inputs(args.inputs)
    if not paths:
        raise UsageError("no video or image files found in " + " ".join(args.inputs))
    config, _ = fit_to_model(config)  # sizes from the model; a value that does not fit fails now, before weights load
    store = store_config(config, args.store)
    check_targets(args.out, store)  # folders too, before any weights load
    outcomes = caption_all(config, paths, formats, args, store)
    return report(outcomes, args.out, store)


def store_config(config, path: Optional[Path]):
    """The caption store to fill: --store PATH (with the config's other store settings), else the
    config's store when enabled, else None."""
    if path is not None:
        return config.store.model_copy(update={"enabled": True, "path": path})
    return config.store if config.store.enabled else None


def check_targets(out: Path, store) -> None:
    from ..config.checks import file_target_problem, folder_problem

    why = folder_problem(out)
    if why:
        raise UsageError(f"--out: {why}")
    why = file_target_problem(store.path) if store is not None else None
    if why:
        raise UsageError(f"the caption store (--store or store.path): {why}")


def caption_all(config, paths: list[Path], formats: list[str], args, store) -> list:
    """Videos, then images, on one backend; with `store`, through one store sink for all."""
    from ..app.batch import BatchRun
    from ..batch.captioner import GateChoice, unreadable_videos
    from ..batch.images import is_image
    from ..config.sinks import UnchangedCues
    from .common import quiet_simulator_if_used

    quiet_simulator_if_used(config)
    videos = [p for p in paths if not is_image(p)]
    images = [p for p in paths if is_image(p)]
    unreadable = unreadable_videos(videos, config.sampling)
    videos = [p for p in videos if p not in {o.path for o in unreadable}]
    if not videos and not images:
        return unreadable  # nothing to caption: no model load for a wrong path
    bars = _Progress(args, files=len(videos))
    unchanged = UnchangedCues(args.unchanged) if args.unchanged else None
    try:
        with BatchRun(config, args.out, formats, store=store, force=args.force, gate=GateChoice(args.gate),
                      unchanged=unchanged, on_progress=bars.progress, on_segment=bars.counted) as run:
            bars.captioner = run.captioner
            outcomes = run.videos(videos, on_file=bars.file_done)
            return unreadable + outcomes + run.images(images)
    finally:
        bars.close()


def report(outcomes: list, out: Path, store) -> int:
    from ..batch.captioner import GateSavings

    done = sum(o.status == "done" for o in outcomes)
    skipped = sum(o.status == "skipped" for o in outcomes)
    failed = [o for o in outcomes if o.status == "failed"]
    for outcome in failed:
        print(f"streamproc: error: {outcome.error}", file=sys.stderr)
    media = sum(o.media_s for o in outcomes)
    seconds = sum(o.seconds for o in outcomes)
    savings = GateSavings.of(outcomes)
    print(
        f"{done} captioned ({media:.0f} s of video in {seconds:.1f} s), {skipped} skipped (done before), "
        f"{len(failed)} failed; outputs in {out}"
        + (f"; {savings.line()}" if savings is not None else "")
        + (f"; stored in {store.path}" if store is not None else "")
    )
    return 1 if failed else 0


class _Progress:
    """One bar over files, and one per file counting segments (described or skipped by the gate)
    out of those planned (known up front from the file's duration and frame size)."""

    def __init__(self, args, files: int) -> None:
        from tqdm import tqdm

        self.tqdm = tqdm
        self.quiet = args.no_progress or not sys.stderr.isatty()
        self.files = files
        self.overall = None
        self.bars: dict = {}
        self.captioner = None

    def progress(self, path: Path, done_s: float, total_s: float) -> None:
        if self.overall is None:
            self.overall = self.tqdm(total=self.files, desc="files", unit="file", position=0, disable=self.quiet)
        if path not in self.bars:
            total = planned_segments(self.captioner, path)
            self.bars[path] = self.tqdm(total=total, desc=path.name[:30], unit="segment", position=1, leave=False,
                                        disable=self.quiet)

    def counted(self, path: Path) -> None:
        bar = self.bars.get(path)
        if bar is not None:
            if bar.total is not None and bar.n + 1 > bar.total:
                bar.total = bar.n + 1  # the estimate was short (e.g. a duration the container misstates)
            bar.update(1)

    def file_done(self, outcome) -> None:
        bar = self.bars.pop(outcome.path, None)
        if bar is not None:
            bar.close()
        if self.overall is not None:
            self.overall.update(1)

    def close(self) -> None:
        if self.overall is not None:
            self.overall.close()


def planned_segments(captioner, path: Path):
    """How many segments the file will be cut into (None when its duration is unknown)."""
    import math

    from ..ingest.sampling import model_frame_size
    from ..ingest.segmenter import plan_segments
    from ..batch.captioner import _duration
    from ..pipeline.planning import prompt_reserve

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
