"""`streamproc bench gate` and `streamproc bench capacity`: their arguments and how they run
(registered by cli/bench.py; the work is in bench/gate.py and bench/capacity.py)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UsageError
from .measure import publish_table as _publish


def add_gate_and_capacity(sub) -> None:
    gate = sub.add_parser(
        "gate",
        help="scene-change gate: confusion table on generated clips with known truth, cost per frame",
        description="Static clips (noise, H.264 at 150 kbit/s, exposure ramps, a ticking timestamp, foliage in "
        "an ignore region, all at once) and event clips (a person walking in, a door opening, a small object "
        "left behind; plain and through H.264 with an exposure ramp), 120 s each in 10 s segments at 504x280, "
        "through the gate's default config. See docs/gate.md.",
    )
    gate.add_argument("--seeds", type=int, default=3, help="scene variants per clip (default 3)")
    gate.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    gate.set_defaults(func=run_gate)
    capacity = sub.add_parser(
        "capacity",
        help="cameras one chip describes in real time, scene-change gate on and off, per scene activity",
        description="Generated scenes at the profile's frame size through the real segmenter, gate and lanes on "
        "a simulated clock, with a model stand-in whose time per segment comes from a timing profile "
        "(default: the seed's published BM1684X 3B 2K figures). See docs/benchmarks.md for the method.",
    )
    capacity.add_argument("--profile", type=Path, default=None,
                          help="timing profile: a JSON file, or the name of a shipped one (default bm1684x-3b-2k; "
                          "also bm1688-3b-2k, bm1684x-7b-2k, bm1684x-3b-8k in streamproc/bench/profiles/)")
    capacity.add_argument("--bmodel", type=Path, default=None,
                          help="measure the profile on this bmodel with the TPU backend instead (needs --tokenizer)")
    capacity.add_argument("--tokenizer", type=Path, default=None, help="folder with tokenizer.json, for --bmodel")
    capacity.add_argument("--caption-tokens", type=int, default=80,
                          help="tokens per caption for --bmodel's profile (default 80; the shipped profiles say theirs)")
    capacity.add_argument("--runtime-dir", type=Path, default=None,
                          help="folder with libbmrt.so, for --bmodel (default $STREAMPROC_BMRT_DIR)")
    capacity.add_argument("--activity", default="0.05,0.15,0.3",
                          help="scene activities to generate: share of segments with change (default 0.05,0.15,0.3)")
    capacity.add_argument("--tapes", type=int, default=6, help="distinct generated scenes per activity (default 6)")
    capacity.add_argument("--minutes", type=float, default=30.0, help="length of each scene in minutes (default 30)")
    capacity.add_argument("--queue-size", type=int, default=4, help="segments waiting per camera (default 4)")
    capacity.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    capacity.set_defaults(func=run_capacity)


def run_gate(args) -> int:
    from . import gate

    if args.seeds < 1:
        raise UsageError("--seeds must be at least 1")
    results = gate.evaluate(args.seeds, progress=lambda m: print(m, file=sys.stderr))
    return _publish(gate.table(results, gate.frame_cost()), args.out)


def run_capacity(args) -> int:
    from . import capacity

    try:
        activities = [float(a) for a in args.activity.split(",") if a.strip()]
    except ValueError:
        raise UsageError(f"--activity takes shares such as 0.05,0.15: got {args.activity!r}") from None
    if not activities or not all(0.0 < a < 1.0 for a in activities):
        raise UsageError("--activity takes shares between 0 and 1, e.g. 0.05,0.15,0.3")
    if args.tapes < 1 or args.minutes <= 0 or args.queue_size < 1:
        raise UsageError("--tapes and --queue-size must be at least 1, --minutes above 0")
    progress = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if args.bmodel is not None:
        if args.tokenizer is None:
            raise UsageError("--bmodel needs --tokenizer (the folder with the model's tokenizer.json)")
        from .measure import DEFAULT_CACHE

        DEFAULT_CACHE.mkdir(parents=True, exist_ok=True)
        if args.caption_tokens < 1:
            raise UsageError("--caption-tokens must be at least 1")
        profile = capacity.measure_profile(args.bmodel, args.tokenizer, args.runtime_dir, DEFAULT_CACHE,
                                           caption_tokens=args.caption_tokens, progress=progress)
        print(f"measured profile: {profile}", file=sys.stderr)
    else:
        path = args.profile or capacity.DEFAULT_PROFILE
        if not path.is_file() and (capacity.PROFILES / f"{path}.json").is_file():  # a shipped one, by name
            path = capacity.PROFILES / f"{path}.json"
        if not path.is_file():
            raise UsageError(f"no timing profile at {path}")
        try:
            profile = capacity.Profile.load(path)
        except (ValueError, KeyError, TypeError) as error:
            raise UsageError(f"timing profile {path}: {error}") from None
    report = capacity.run(profile, activities, tapes=args.tapes, minutes=args.minutes, queue_size=args.queue_size,
                          progress=progress)
    return _publish(capacity.table(report), args.out)


