"""`streamproc bench store`: the caption store's insert rate, search latency and size.

- Fill: N captions (default 1 million) from 8 cameras, one per 20 s segment each, about a month,
  written once with executemany (cached under the bench folder; --rebuild makes it anew). The rows
  are what the sink writes: the caption text, the event JSON, times.
- Insert rate while the service runs: events through the real StoreSink (handle() on the calling
  thread, its writer thread batching into the filled store) while a reader thread searches as the
  HTTP API would; the cost of handle() on the pipeline's thread is reported per call.
- Search latency over the filled store: two-word queries with a 24 h window (the goal: p95 < 50 ms),
  and for comparison the same without a window, a phrase and a prefix query.
- Size: the database file (after a checkpoint) per million captions.
"""
from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

CAMERAS = [f"cam{i}" for i in range(1, 9)]
SEGMENT_S = 20.0
SUBJECTS = ["a person", "a man", "a woman", "two people", "a child", "a courier", "a dog", "a cat", "a red car",
            "a white van", "a black car", "a cyclist", "a delivery driver", "a group of people", "a neighbour",
            "a grey truck", "a postman", "a jogger", "a bird", "a fox"]
ACTIONS = ["walks past", "stands near", "opens", "closes", "parks beside", "runs towards", "waits at",
           "leaves a parcel at", "looks at", "carries a box to", "rides past", "drives past", "knocks on",
           "sits by", "crosses", "stops at"]
PLACES = ["the front door", "the gate", "the driveway", "the garage", "the fence", "the porch", "the street",
          "the garden", "the mailbox", "the window", "the parking lot", "the sidewalk"]
EXTRAS = ["", "", "It is raining.", "The light is dim.", "Nothing else moves.", "A car passes in the background.",
          "The scene is quiet.", "Leaves blow across the ground.", "It is sunny.", "Snow covers the ground."]
QUERIES = ["red car", "white van", "front door", "delivery parcel", "person gate", "dog garden", "courier box",
           "cyclist street", "black car", "child porch"]


def _caption(rng: random.Random) -> str:
    subject, action, place, extra = rng.choice(SUBJECTS), rng.choice(ACTIONS), rng.choice(PLACES), rng.choice(EXTRAS)
    return f"{subject.capitalize()} {action} {place}. {extra}".strip()


def fill(path: Path, count: int, end: float, progress: Callable[[str], None]) -> dict[str, Any]:
    """`count` captions ending at `end`, written with executemany in batches of 50 000."""
    from ..store.db import CaptionStore

    rng = random.Random(7)
    store = CaptionStore(path)
    per_camera = count // len(CAMERAS) + 1
    start = end - per_camera * SEGMENT_S
    started = time.perf_counter()
    batch: list[tuple] = []
    written = 0
    for i in range(count):
        camera = CAMERAS[i % len(CAMERAS)]
        index = i // len(CAMERAS)
        wall = start + index * SEGMENT_S + (i % len(CAMERAS)) * 0.5
        text = _caption(rng)
        event_id = f"{camera}@{int(wall * 1000):013d}"
        data = {"v": 1, "type": "caption", "id": event_id, "source": camera, "ts": round(wall + SEGMENT_S + 2, 3),
                "segment": {"index": index, "start": index * SEGMENT_S, "end": (index + 1) * SEGMENT_S,
                            "start_wall": round(wall, 3), "end_wall": round(wall + SEGMENT_S, 3), "frames": 20,
                            "fps": 1.0, "gap_before": False, "last": False},
                "text": text, "model": "Qwen2.5-VL-3B-Instruct", "tokens": {"prompt": 1930, "visual": 1800, "generated": 31},
                "finish_reason": "stop", "timings": {"vision_s": 0.61, "prefill_s": 0.52, "decode_s": 1.1, "total_s": 2.3}}
        batch.append((event_id, "caption", camera, wall, wall + SEGMENT_S, index * SEGMENT_S, (index + 1) * SEGMENT_S,
                      text, json.dumps(data, separators=(",", ":")), None, None))
        if len(batch) >= 50_000:
            store.add_rows(batch)
            written += len(batch)
            batch = []
            progress(f"filled {written:,} / {count:,} rows ({time.perf_counter() - started:.0f} s)")
    if batch:
        store.add_rows(batch)
    store.conn.execute("INSERT INTO entries_fts (entries_fts) VALUES ('optimize')")
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    seconds = time.perf_counter() - started
    store.close()
    return {"rows": count, "seconds": seconds, "start": start, "end": end}


def search_latency(path: Path, end: float, days: float, repeats: int) -> dict[str, dict[str, float]]:
    from ..store.search import StoreReader

    rng = random.Random(11)
    cases: dict[str, Callable[[StoreReader], Any]] = {}

    def windowed(reader: StoreReader) -> Any:
        until = end - rng.uniform(0, max(0.0, days - 1)) * 86400
        return reader.search(rng.choice(QUERIES), since=until - 86400, until=until, limit=20)

    cases["two words, 24 h window"] = windowed
    cases["two words, 24 h window, one camera"] = lambda r: r.search(
        rng.choice(QUERIES), sources=[rng.choice(CAMERAS)], since=end - 86400, until=end, limit=20)
    cases["two words, no window"] = lambda r: r.search(rng.choice(QUERIES), limit=20)
    cases["phrase, 24 h window"] = lambda r: r.search('"leaves a parcel"', since=end - 86400, until=end, limit=20)
    cases["prefix, 24 h window"] = lambda r: r.search("deliv* door", since=end - 86400, until=end, limit=20)
    results = {}
    with StoreReader(path) as reader:
        for name, run in cases.items():
            run(reader)  # warm the page cache as a running service would be
            samples, hits = [], 0
            for _ in range(repeats):
                started = time.perf_counter()
                hits += len(run(reader))
                samples.append(time.perf_counter() - started)
            results[name] = _stats(samples) | {"hits": hits / repeats}
    return results


def insert_rate(path: Path, events: int, end: float, progress: Callable[[str], None]) -> dict[str, Any]:
    """Events through the StoreSink into the filled store while a reader searches."""
    from ..config.store import StoreConfig
    from ..events import Event
    from ..store.search import StoreReader
    from ..store.sink import StoreSink

    rng = random.Random(5)
    sink = StoreSink(StoreConfig(enabled=True, path=path, queue_size=events + 10,
                                 retention={"max_age": None, "max_size_mb": None}))
    sink.start()
    stop = threading.Event()
    searches: list[float] = []

    def reader_load() -> None:
        with StoreReader(path) as reader:
            while not stop.is_set():
                started = time.perf_counter()
                reader.search(rng.choice(QUERIES), since=end - 86400, until=end + 86400, limit=20)
                searches.append(time.perf_counter() - started)
                time.sleep(0.05)

    reader = threading.Thread(target=reader_load, daemon=True)
    reader.start()
    prepared = []
    run_id = time.time_ns()  # ids unique per run: a cached store must not deduplicate this run's events
    for i in range(events):
        wall = end + i * 0.1
        data = {"v": 1, "type": "caption", "id": f"live@{run_id}-{i}", "source": "live", "ts": wall,
                "segment": {"index": i, "start": i * 2.0, "end": i * 2.0 + 2, "start_wall": wall, "end_wall": wall + 2,
                            "frames": 2, "fps": 1.0, "gap_before": False, "last": False},
                "text": _caption(rng), "model": "bench", "tokens": {"prompt": 1, "visual": 1, "generated": 1},
                "finish_reason": "stop", "timings": {"total_s": 1.0}}
        prepared.append(Event("caption", data["id"], "live", data))
    handle_s: list[float] = []
    started = time.perf_counter()
    for event in prepared:
        t = time.perf_counter()
        sink.handle(event)
        handle_s.append(time.perf_counter() - t)
    handed = time.perf_counter() - started
    sink.flush(600)
    seconds = time.perf_counter() - started
    stop.set()
    reader.join(10)
    stats = sink.stats()
    sink.close()
    progress(f"inserted {stats['stored']:,} events in {seconds:.1f} s")
    return {"events": events, "stored": stats["stored"], "dropped": stats["dropped"], "seconds": seconds,
            "handed_s": handed, "batches": stats["batches"], "handle": _stats(handle_s, scale=1e6),
            "searches": _stats(searches), "search_count": len(searches)}


def _stats(samples: list[float], scale: float = 1e3) -> dict[str, float]:
    ordered = sorted(samples) or [0.0]
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": pick(0.5) * scale, "p95": pick(0.95) * scale, "p99": pick(0.99) * scale,
            "mean": statistics.mean(ordered) * scale, "n": len(samples)}


def run(cache: Path, *, rows: int, events: int, repeats: int, rebuild: bool,
        progress: Callable[[str], None]) -> dict[str, Any]:
    path = cache / f"store-{rows}.sqlite"
    end = 1_790_000_000.0  # fixed: the same file serves every run
    built: Optional[dict[str, Any]] = None
    if rebuild or not path.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        progress(f"filling {path} with {rows:,} captions")
        built = fill(path, rows, end, progress)
    from ..store.db import CaptionStore

    CaptionStore(path).close()  # migrates a store cached by an older version
    size = path.stat().st_size  # includes the events earlier runs put through the sink (--rebuild for a clean one)
    days = rows / len(CAMERAS) * SEGMENT_S / 86400
    latency = search_latency(path, end, days, repeats)
    inserts = insert_rate(path, events, end, progress)
    return {"path": str(path), "rows": rows, "days": days, "size": size, "built": built, "latency": latency,
            "inserts": inserts, "cpus": os.cpu_count(), "load": os.getloadavg()[0]}


def table(report: dict[str, Any]) -> str:
    rows, size = report["rows"], report["size"]
    lines = [
        f"Store: {rows:,} captions from {len(CAMERAS)} cameras over {report['days']:.0f} days "
        f"({report['rows'] / report['days'] / len(CAMERAS):,.0f} per camera per day); "
        f"SQLite WAL + FTS5 (porter), {report['cpus']} CPUs, load average {report['load']:.1f} when it ended.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| database size | {size / 2**20:,.0f} MiB = **{size / 2**20 / rows * 1e6:,.0f} MiB per million captions** "
        f"({size / rows:,.0f} bytes per caption, event JSON included) |",
    ]
    if report["built"]:
        b = report["built"]
        lines.append(f"| bulk fill (executemany, 50k rows per transaction) | {b['rows'] / b['seconds']:,.0f} rows/s "
                     f"({b['seconds']:.0f} s) |")
    i = report["inserts"]
    lines += [
        f"| insert rate through the store sink, a reader searching meanwhile | **{i['stored'] / i['seconds']:,.0f} "
        f"events/s** ({i['stored']:,} events in {i['seconds']:.1f} s, {i['batches']} batches, {i['dropped']} dropped) |",
        f"| StoreSink.handle() on the pipeline's thread | p50 {i['handle']['p50']:.1f} µs, p99 {i['handle']['p99']:.1f} µs |",
        f"| searches during the inserts ({i['search_count']}) | p50 {i['searches']['p50']:.1f} ms, "
        f"p95 {i['searches']['p95']:.1f} ms |",
        "",
        f"Search latency over the {rows:,} captions (limit 20, bm25 order, snippets; ms):",
        "",
        "| query | p50 | p95 | p99 | hits |",
        "|---|---|---|---|---|",
    ]
    for name, s in report["latency"].items():
        lines.append(f"| {name} | {s['p50']:.1f} | {s['p95']:.1f} | {s['p99']:.1f} | {s['hits']:.0f} |")
    return "\n".join(lines)
