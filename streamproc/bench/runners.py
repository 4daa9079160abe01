"""How each `streamproc bench` command runs (the table is bench/commands.py): the option checks,
then the bench's own module; each returns the results table (markdown), which the CLI prints."""
from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .measure import DEFAULT_CACHE
from .measure import progress as _progress


def run_ingest(args) -> str:
    from . import ingest

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
    report = ingest.run(clip, args.duration, args.repeats, methods, progress=_progress,
                        generate=args.clip is None)
    return ingest.table(report)


def run_service(args) -> str:
    from . import service

    clip = _clip_path(args.duration)
    report = service.run(
        clip, args.duration, DEFAULT_CACHE, streams=args.streams, rss_streams=args.rss_streams,
        rss_seconds=args.rss_seconds, progress=_progress,
    )
    return service.table(report)


def run_engine(args) -> str:
    from ..backends.tpu import silence_simulator_stdout
    from . import engine

    bmodel = args.bmodel or engine.default_bmodel()
    if not bmodel.is_file():
        raise UsageError(f"no bmodel at {bmodel}: give --bmodel (the default fixture needs a source checkout)")
    if args.segments < 1:
        raise UsageError("--segments must be at least 1")
    DEFAULT_CACHE.mkdir(parents=True, exist_ok=True)
    tokenizer = args.tokenizer or engine.tiny_tokenizer(DEFAULT_CACHE)
    _fits_the_bmodel(bmodel, tokenizer, args)  # before the engine loads, by the rule every command uses
    _progress(f"bmodel: {bmodel}; tokenizer: {tokenizer}")
    report = engine.run(
        bmodel=bmodel, tokenizer=tokenizer, runtime_dir=args.runtime_dir, clip=args.clip, cache=DEFAULT_CACHE,
        segments=args.segments, segment_s=args.segment_seconds, frame_pixels=args.frame_pixels,
        max_new_tokens=args.max_new_tokens, progress=_progress,
        on_loaded=silence_simulator_stdout,  # the simulator's debug lines go to C stdout
    )
    return engine.table(report)


def _fits_the_bmodel(bmodel: Path, tokenizer: Path, args) -> None:
    from ..backends.geometry import fit_to_model
    from ..config import config_from_data

    sampling = {"video_area_factor": 1.0, **({"max_pixels": args.frame_pixels} if args.frame_pixels else {})}
    config = config_from_data({"backend": {"type": "tpu", "bmodel": str(bmodel), "tokenizer": str(tokenizer)},
                               "sampling": sampling, "generation": {"max_new_tokens": args.max_new_tokens}})
    fit_to_model(config, flags={"sampling.max_pixels": "--frame-pixels"})


def run_serve(args) -> str:
    from . import serve

    if min(args.engines, args.requests, args.max_tokens, args.clients) < 1 or args.rps_requests < 0:
        raise UsageError("--engines, --requests, --max-tokens and --clients must be at least 1")
    backends = _serve_backends(args)
    label = f"`{backends[0].model_id}` ({backends[0].name} backend)"
    try:
        report = serve.run(backends, label, args.requests, args.max_tokens, args.clients, args.rps_requests,
                           progress=_progress)
    finally:
        for backend in backends:
            backend.close()
    return serve.table(report)


def _serve_backends(args) -> list:
    from ..backends.base import create_backend
    from ..config.model import HfBackendConfig, TpuBackendConfig

    if args.model:
        return [create_backend(HfBackendConfig(model=args.model, device="cpu", dtype="float32"))]
    from . import engine
    from ..backends.tpu import quiet_simulator

    bmodel = args.bmodel or engine.default_bmodel()
    if not bmodel.is_file():
        raise UsageError(f"no bmodel at {bmodel}: give --bmodel or --model")
    DEFAULT_CACHE.mkdir(parents=True, exist_ok=True)
    tokenizer = args.tokenizer or engine.tiny_tokenizer(DEFAULT_CACHE)
    config = TpuBackendConfig(bmodel=bmodel, tokenizer=tokenizer, runtime_dir=args.runtime_dir)
    quiet_simulator(args.runtime_dir)  # its debug lines go to C stdout, not into the table
    return [create_backend(config) for _ in range(args.engines)]


def run_web(args) -> str:
    from . import web

    if min(args.cameras, args.repeats, args.live_events) < 1:
        raise UsageError("--cameras, --repeats and --live-events must be at least 1")
    report = web.run(args.cameras, args.repeats, args.live_events, progress=_progress)
    return web.table(report)


def run_store(args) -> str:
    from . import store

    if args.rows < 1000 or args.events < 1 or args.repeats < 1:
        raise UsageError("--rows must be at least 1000, --events and --repeats at least 1")
    DEFAULT_CACHE.mkdir(parents=True, exist_ok=True)
    report = store.run(DEFAULT_CACHE, rows=args.rows, events=args.events, repeats=args.repeats,
                       rebuild=args.rebuild, progress=_progress)
    return store.table(report)


def _clip_path(duration: float) -> Path:
    """The generated 1080p30 clip the ingest and service benches share (made once, cached)."""
    DEFAULT_CACHE.mkdir(parents=True, exist_ok=True)
    return DEFAULT_CACHE / f"ingest-1080p30-h264-{int(duration)}s.mp4"


def run_gate(args) -> str:
    from . import gate

    if args.seeds < 1:
        raise UsageError("--seeds must be at least 1")
    results = gate.evaluate(args.seeds, progress=_progress)
    return gate.table(results, gate.frame_cost())


def _profile(capacity, path: Path):
    if not path.is_file() and (capacity.PROFILES / f"{path}.json").is_file():  # a shipped one, by name
        path = capacity.PROFILES / f"{path}.json"
    if not path.is_file():
        raise UsageError(f"no timing profile at {path}")
    try:
        return capacity.Profile.load(path)
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"timing profile {path}: {error}") from None


def _shares(text: str, option: str, kind=float) -> list:
    try:
        return [kind(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise UsageError(f"{option} takes a comma-separated list, e.g. 0.05,0.15: got {text!r}") from None


def run_capacity(args) -> str:
    from . import capacity

    activities = _shares(args.activity, "--activity")
    rules = tuple(_shares(args.rules, "--rules", int))
    if not activities or not all(0.0 < a < 1.0 for a in activities):
        raise UsageError("--activity takes shares between 0 and 1, e.g. 0.05,0.15,0.3")
    if not rules or min(rules) < 0 or args.seeds < 1 or args.tapes < 1 or args.minutes <= 0 or args.caption_tokens < 1:
        raise UsageError("--rules must be counts >= 0; --seeds, --tapes and --caption-tokens at least 1; --minutes above 0")
    progress = _progress
    if args.bmodel is not None:
        if args.tokenizer is None:
            raise UsageError("--bmodel needs --tokenizer (the folder with the model's tokenizer.json)")
        from .measure import DEFAULT_CACHE

        DEFAULT_CACHE.mkdir(parents=True, exist_ok=True)
        profile = capacity.measure_profile(args.bmodel, args.tokenizer, args.runtime_dir, DEFAULT_CACHE, progress)
        _progress(f"measured profile: {capacity.describe(profile)}")
    else:
        profile = _profile(capacity, args.profile or capacity.DEFAULT_PROFILE)
    others = tuple(_profile(capacity, Path(name.strip())) for name in args.others.split(",") if name.strip())
    if any((o.frame, o.seq_length) != (profile.frame, profile.seq_length) for o in others):
        raise UsageError("--others must have the profile's frame size and sequence length (they share its tapes)")
    host = capacity.host_cost() if args.host else None
    report = capacity.run(profile, activities, rules=rules, seeds=args.seeds, tapes=args.tapes, minutes=args.minutes,
                          caption_tokens=args.caption_tokens, others=others, tape_cache=args.tape_cache,
                          progress=progress)
    text = capacity.table(report, host)
    if args.mixed:
        rows = [capacity.mixed_site(profile, busy=busy, seeds=args.seeds, tapes=args.tapes, minutes=args.minutes,
                                    caption_tokens=args.caption_tokens, progress=progress) for busy in (1, 2)]
        text += "\n\nmixed site, joint call, urgency policy:\n\n" + capacity.mixed_table(rows)
    return text


def run_live(args) -> str:
    from . import capacity, live
    from .service import _tokenizer_dir

    if args.cameras < 1 or args.speed <= 0 or args.seconds < 60 or not 0 < args.activity < 1 or args.rules < 0:
        raise UsageError("--cameras >= 1, --speed > 0, --seconds >= 60, --activity in (0, 1), --rules >= 0")
    profile = _profile(capacity, args.profile or capacity.DEFAULT_PROFILE)
    DEFAULT_CACHE.mkdir(parents=True, exist_ok=True)
    setup = live.Setup(cameras=args.cameras, speed=args.speed, seconds=args.seconds, activity=args.activity,
                       rules=args.rules, seed=args.seed)
    return live.table(live.run(setup, profile, _tokenizer_dir(DEFAULT_CACHE), progress=_progress))
