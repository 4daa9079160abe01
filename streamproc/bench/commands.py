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
        help="cameras per chip with rules and alerts: joint call and urgency policy against the old way",
        description="Generated scenes through the real gate (segments cut as the urgency policy says), then one "
        "chip on a simulated clock priced by a timing profile (default: the seed's published BM1684X 3B 2K "
        "figures): chip load, event-to-alert and event-to-caption delay, changes missed, segments dropped, per "
        "activity, rule count and mode. Cameras per chip: p95 event-to-alert <= 20 s, load <= 85%%, nothing "
        "missed or dropped. See docs/benchmarks.md and streamproc/bench/policy.py.",
    )
    capacity.add_argument("--profile", type=Path, default=None,
                          help="timing profile: a JSON file, or the name of a shipped one (default bm1684x-3b-2k; "
                          "see streamproc/bench/profiles/)")
    capacity.add_argument("--others", default="",
                          help="more shipped profiles with the same frame size and sequence length, comma-separated "
                          "(e.g. bm1684x-7b-2k,bm1688-3b-2k): joint call, 2 rules, same tapes")
    capacity.add_argument("--bmodel", type=Path, default=None,
                          help="measure the profile on this bmodel with the TPU backend instead (needs --tokenizer)")
    capacity.add_argument("--tokenizer", type=Path, default=None, help="folder with tokenizer.json, for --bmodel")
    capacity.add_argument("--runtime-dir", type=Path, default=None,
                          help="folder with libbmrt.so, for --bmodel (default $STREAMPROC_BMRT_DIR)")
    capacity.add_argument("--activity", default="0.05,0.15,0.3",
                          help="scene activities to generate: share of segments with change (default 0.05,0.15,0.3)")
    capacity.add_argument("--rules", default="0,1,2,3", help="rule counts to model (default 0,1,2,3)")
    capacity.add_argument("--seeds", type=int, default=3, help="scene sets; min and median are reported (default 3)")
    capacity.add_argument("--tapes", type=int, default=4, help="distinct scenes per seed and activity (default 4)")
    capacity.add_argument("--minutes", type=float, default=30.0, help="length of each scene in minutes (default 30)")
    capacity.add_argument("--caption-tokens", type=int, default=40, help="caption token budget (default 40)")
    capacity.add_argument("--mixed", action="store_true",
                          help="also the mixed site: 1 or 2 cameras that change in every segment beside quiet ones (5%%)")
    capacity.add_argument("--host", action="store_true",
                          help="also measure decode + gate CPU per camera on this machine (1080p30 H.264)")
    capacity.add_argument("--tape-cache", type=Path, default=None,
                          help="keep the recorded tapes in this folder and reuse them (they depend only on the scenes, "
                          "the frame plan and the policy's cuts)")
    capacity.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    capacity.set_defaults(func=run_capacity)


def run_gate(args) -> int:
    from . import gate

    if args.seeds < 1:
        raise UsageError("--seeds must be at least 1")
    results = gate.evaluate(args.seeds, progress=lambda m: print(m, file=sys.stderr))
    return _publish(gate.table(results, gate.frame_cost()), args.out)


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


def run_capacity(args) -> int:
    from . import capacity

    activities = _shares(args.activity, "--activity")
    rules = tuple(_shares(args.rules, "--rules", int))
    if not activities or not all(0.0 < a < 1.0 for a in activities):
        raise UsageError("--activity takes shares between 0 and 1, e.g. 0.05,0.15,0.3")
    if not rules or min(rules) < 0 or args.seeds < 1 or args.tapes < 1 or args.minutes <= 0 or args.caption_tokens < 1:
        raise UsageError("--rules must be counts >= 0; --seeds, --tapes and --caption-tokens at least 1; --minutes above 0")
    progress = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if args.bmodel is not None:
        if args.tokenizer is None:
            raise UsageError("--bmodel needs --tokenizer (the folder with the model's tokenizer.json)")
        from .measure import DEFAULT_CACHE

        DEFAULT_CACHE.mkdir(parents=True, exist_ok=True)
        profile = capacity.measure_profile(args.bmodel, args.tokenizer, args.runtime_dir, DEFAULT_CACHE, progress)
        print(f"measured profile: {capacity.describe(profile)}", file=sys.stderr)
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
    return _publish(text, args.out)
