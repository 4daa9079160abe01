"""`streamproc bench`: performance measured as ratios, side by side in one run."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..bench.measure import DEFAULT_CACHE
from ..errors import UsageError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark (ingest, ...) and print a results table",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  streamproc bench ingest --repeats 3\n  streamproc bench ingest --out docs/bench-ingest.md",
    )
    sub = parser.add_subparsers(dest="bench", metavar="BENCH")
    from .common import HelpFormatter

    ingest = sub.add_parser(
        "ingest", help="1080p30 H.264 ingest: ours vs bare PyAV decode vs the seed path", formatter_class=HelpFormatter,
        description="Seconds of video ingested per CPU second by each method, on a generated 1080p30 clip or on "
        "--clip (described and measured by its own duration).",
    )
    ingest.add_argument("--duration", type=float, default=30.0,
                        help="length of the generated clip in seconds (--clip is measured by its own length)")
    ingest.add_argument("--repeats", type=int, default=3, help="runs per method; the median is reported")
    ingest.add_argument("--methods", default="full,nonref,ours,seed", help="comma-separated subset of the methods")
    ingest.add_argument("--clip", type=Path, default=None, help="measure this clip instead of a generated one")
    ingest.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    ingest.set_defaults(func=run_ingest)
    service = sub.add_parser("service", help="streams per CPU core, event latency to PUBACK, RSS per extra stream")
    service.add_argument("--duration", type=float, default=30.0, help="1080p30 clip length in seconds (default 30)")
    service.add_argument("--streams", type=int, default=4, help="streams at once for the CPU measure (default 4)")
    service.add_argument("--rss-streams", type=int, default=5, help="streams for the RSS measure (default 5)")
    service.add_argument("--rss-seconds", type=float, default=40.0, help="how long each RSS run lasts")
    service.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    service.set_defaults(func=run_service)
    engine = sub.add_parser(
        "engine",
        help="TpuBackend host overhead per segment (preprocessing, copies, masks) vs device time",
        description="Runs segments of a clip through TpuBackend and splits each into host work and time "
        "inside net launches (the engine's own timers). Default: the tiny dynamic_bf16_s256 fixture on "
        "the runtime from --runtime-dir / $STREAMPROC_BMRT_DIR (the CPU simulator: see docs/benchmarks.md).",
    )
    engine.add_argument("--bmodel", type=Path, default=None, help="Qwen2.5-VL bmodel (default: the tiny fixture)")
    engine.add_argument("--tokenizer", type=Path, default=None, help="folder with tokenizer.json (default: the tiny model)")
    engine.add_argument("--runtime-dir", type=Path, default=None, help="folder with libbmrt.so (default $STREAMPROC_BMRT_DIR)")
    engine.add_argument("--clip", type=Path, default=None, help="video to segment (default: a generated clip)")
    engine.add_argument("--segments", type=int, default=3, help="segments to run (default 3)")
    engine.add_argument("--segment-seconds", type=float, default=8.0, help="segment length at 1 fps (default 8)")
    engine.add_argument("--frame-pixels", type=int, default=None, help="frame area (default: half the ViT's patches)")
    engine.add_argument("--max-new-tokens", type=int, default=8, help="tokens per answer (default 8)")
    engine.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    engine.set_defaults(func=run_engine)
    web = sub.add_parser(
        "web",
        help="the web view in headless Chromium: first-load bytes, time to first caption, live latency",
        description="Serves the web view (the same routes the service mounts) with captioned cameras and "
        "loads it in Debian's chromium through selenium (both needed: apt-get install chromium "
        "chromium-driver; pip install selenium).",
    )
    web.add_argument("--cameras", type=int, default=4, help="cameras on the page (default 4)")
    web.add_argument("--repeats", type=int, default=5, help="page loads with a cold cache (default 5)")
    web.add_argument("--live-events", type=int, default=20, help="captions sent while the page is open (default 20)")
    web.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    web.set_defaults(func=run_web)
    serve = sub.add_parser(
        "serve",
        help="streamproc serve's HTTP overhead (first token, total) vs a direct engine call; requests/s",
        formatter_class=HelpFormatter,
        description="The same streamed request (a small image + text) through `streamproc serve` on 127.0.0.1 and "
        "as a direct call on the same backend, interleaved; then requests/s with several clients. Default: the "
        "tiny dynamic_bf16_s256 fixture on the simulator ($STREAMPROC_BMRT_DIR); --model for transformers.",
    )
    serve.add_argument("--bmodel", type=Path, default=None, help="Qwen2.5-VL bmodel (default: the tiny fixture)")
    serve.add_argument("--tokenizer", type=Path, default=None, help="folder with tokenizer.json (default: the tiny model)")
    serve.add_argument("--runtime-dir", type=Path, default=None, help="folder with libbmrt.so (default $STREAMPROC_BMRT_DIR)")
    serve.add_argument("--model", default=None, help="a transformers checkpoint instead (e.g. the tiny one: "
                       "streamproc make-tiny-model DIR)")
    serve.add_argument("--engines", type=int, default=2, help="TPU engines in the pool (default 2)")
    serve.add_argument("--requests", type=int, default=10, help="requests each way for the overhead (default 10)")
    serve.add_argument("--max-tokens", type=int, default=2, help="tokens per answer (default 2)")
    serve.add_argument("--clients", type=int, default=4, help="concurrent clients for requests/s (default 4)")
    serve.add_argument("--rps-requests", type=int, default=8, help="requests for requests/s, each way (default 8; 0 skips)")
    serve.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    serve.set_defaults(func=run_serve)
    store = sub.add_parser(
        "store", help="caption store: search latency over 1M captions, insert rate while searching, size",
        description="Fills a store with --rows captions once (cached; --rebuild), then measures search latency "
        "(two words, 24 h window: the goal is p95 < 50 ms), events/s through the store sink while a reader "
        "searches, and the file size per million captions. See docs/benchmarks.md.",
    )
    store.add_argument("--rows", type=int, default=1_000_000, help="captions in the store (default 1000000)")
    store.add_argument("--events", type=int, default=50_000, help="events through the sink (default 50000)")
    store.add_argument("--repeats", type=int, default=200, help="searches per query kind (default 200)")
    store.add_argument("--rebuild", action="store_true", help="fill the store anew even if cached")
    store.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    store.set_defaults(func=run_store)
    from ..bench.commands import add_gate_and_capacity  # bench gate, bench capacity

    add_gate_and_capacity(sub)
    from ..bench.cluster import add_parser as add_cluster  # bench cluster

    add_cluster(sub)
    from ..bench.doctor import add_parser as add_doctor  # bench doctor

    add_doctor(sub)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run_ingest(args) -> int:
    from ..bench import ingest

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in ingest.METHODS]
    if unknown:
        raise UsageError(f"unknown bench methods: {', '.join(unknown)} (choose from {', '.join(ingest.METHODS)})")
    clip = args.clip or _clip_path(args.duration)
    if args.clip is None:
        ingest.make_clip(clip, args.duration)
    elif not clip.is_file():
        raise UsageError(f"--clip {clip}: no such file")
    print(f"clip: {clip} ({ingest.describe_clip(ingest.clip_info(clip))})")  # what was measured, from the clip itself
    report = ingest.run(clip, args.duration, args.repeats, methods, progress=lambda m: print(m, file=sys.stderr),
                        generate=args.clip is None)
    return _publish(ingest.table(report), args.out)


def run_service(args) -> int:
    from ..bench import service

    clip = _clip_path(args.duration)
    report = service.run(
        clip, args.duration, DEFAULT_CACHE, streams=args.streams, rss_streams=args.rss_streams,
        rss_seconds=args.rss_seconds, progress=lambda m: print(m, file=sys.stderr),
    )
    return _publish(service.table(report), args.out)


def run_engine(args) -> int:
    from ..backends.tpu import silence_simulator_stdout
    from ..bench import engine

    bmodel = args.bmodel or engine.default_bmodel()
    if not bmodel.is_file():
        raise UsageError(f"no bmodel at {bmodel}: give --bmodel (the default fixture needs a source checkout)")
    if args.segments < 1:
        raise UsageError("--segments must be at least 1")
    DEFAULT_CACHE.mkdir(parents=True, exist_ok=True)
    tokenizer = args.tokenizer or engine.tiny_tokenizer(DEFAULT_CACHE)
    _fits_the_bmodel(bmodel, tokenizer, args)  # before the engine loads, by the rule every command uses
    print(f"bmodel: {bmodel}; tokenizer: {tokenizer}", file=sys.stderr)
    report = engine.run(
        bmodel=bmodel, tokenizer=tokenizer, runtime_dir=args.runtime_dir, clip=args.clip, cache=DEFAULT_CACHE,
        segments=args.segments, segment_s=args.segment_seconds, frame_pixels=args.frame_pixels,
        max_new_tokens=args.max_new_tokens, progress=lambda m: print(m, file=sys.stderr),
        on_loaded=silence_simulator_stdout,  # the simulator's debug lines go to C stdout
    )
    return _publish(engine.table(report), args.out)


def _fits_the_bmodel(bmodel: Path, tokenizer: Path, args) -> None:
    from ..backends.geometry import fit_to_model
    from ..config import config_from_data

    sampling = {"video_area_factor": 1.0, **({"max_pixels": args.frame_pixels} if args.frame_pixels else {})}
    config = config_from_data({"backend": {"type": "tpu", "bmodel": str(bmodel), "tokenizer": str(tokenizer)},
                               "sampling": sampling, "generation": {"max_new_tokens": args.max_new_tokens}})
    fit_to_model(config, flags={"sampling.max_pixels": "--frame-pixels"})


def run_serve(args) -> int:
    from ..bench import serve

    if min(args.engines, args.requests, args.max_tokens, args.clients) < 1 or args.rps_requests < 0:
        raise UsageError("--engines, --requests, --max-tokens and --clients must be at least 1")
    backends = _serve_backends(args)
    label = f"`{backends[0].model_id}` ({backends[0].name} backend)"
    try:
        report = serve.run(backends, label, args.requests, args.max_tokens, args.clients, args.rps_requests,
                           progress=lambda m: print(m, file=sys.stderr))
    finally:
        for backend in backends:
            backend.close()
    return _publish(serve.table(report), args.out)


def _serve_backends(args) -> list:
    from ..backends.base import create_backend
    from ..config.model import HfBackendConfig, TpuBackendConfig

    if args.model:
        return [create_backend(HfBackendConfig(model=args.model, device="cpu", dtype="float32"))]
    from ..bench import engine
    from .common import quiet_simulator

    bmodel = args.bmodel or engine.default_bmodel()
    if not bmodel.is_file():
        raise UsageError(f"no bmodel at {bmodel}: give --bmodel or --model")
    DEFAULT_CACHE.mkdir(parents=True, exist_ok=True)
    tokenizer = args.tokenizer or engine.tiny_tokenizer(DEFAULT_CACHE)
    config = TpuBackendConfig(bmodel=bmodel, tokenizer=tokenizer, runtime_dir=args.runtime_dir)
    quiet_simulator(args.runtime_dir)  # its debug lines go to C stdout, not into the table
    return [create_backend(config) for _ in range(args.engines)]


def run_web(args) -> int:
    from ..bench import web

    if min(args.cameras, args.repeats, args.live_events) < 1:
        raise UsageError("--cameras, --repeats and --live-events must be at least 1")
    report = web.run(args.cameras, args.repeats, args.live_events, progress=lambda m: print(m, file=sys.stderr))
    return _publish(web.table(report), args.out)


def run_store(args) -> int:
    from ..bench import store

    if args.rows < 1000 or args.events < 1 or args.repeats < 1:
        raise UsageError("--rows must be at least 1000, --events and --repeats at least 1")
    DEFAULT_CACHE.mkdir(parents=True, exist_ok=True)
    report = store.run(DEFAULT_CACHE, rows=args.rows, events=args.events, repeats=args.repeats,
                       rebuild=args.rebuild, progress=lambda m: print(m, file=sys.stderr))
    return _publish(store.table(report), args.out)


def _clip_path(duration: float) -> Path:
    """The generated 1080p30 clip the ingest and service benches share (made once, cached)."""
    DEFAULT_CACHE.mkdir(parents=True, exist_ok=True)
    return DEFAULT_CACHE / f"ingest-1080p30-h264-{int(duration)}s.mp4"


def _publish(text: str, out) -> int:
    from ..bench.measure import publish_table

    return publish_table(text, out)
