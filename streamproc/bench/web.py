"""`streamproc bench web`: what the web view costs a browser on loopback.

Serves the page from the hub and routes on a real HTTP server (the same code the service mounts),
with `cameras` cameras that each have a caption and a snapshot, and loads it in headless Chromium:
- bytes transferred by the first load (the page, its script and style, the snapshots), from the
  browser's own resource timing;
- time from navigation to the first caption on screen (the page's `first-caption` mark);
- live latency: from the hub taking a caption event to the browser showing it, over the
  server-sent events feed (polled from the test driver every 5 ms, so +-5 ms).
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Optional

import numpy as np


def _scene(index: int) -> np.ndarray:
    """A camera-like 504x280 frame: sky and ground gradients, a few objects, sensor noise."""
    rng = np.random.default_rng(index)
    rows = np.linspace(0.0, 1.0, 280, dtype=np.float32)[:, None, None]
    sky = np.array([150, 185, 225], np.float32) * (1 - 0.3 * rows)
    ground = np.array([90, 110, 70], np.float32) * (0.8 + 0.4 * rows)
    image = np.where(rows < 0.45, sky, ground) * np.ones((1, 504, 1), np.float32)
    for _ in range(6):
        y, x = int(rng.integers(60, 240)), int(rng.integers(0, 460))
        h, w = int(rng.integers(20, 90)), int(rng.integers(20, 120))
        image[y:y + h, x:x + w] = rng.integers(30, 230, 3)
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _segment(source: str, index: int):
    from ..frames import Frame, Segment

    now = time.time()
    frames = tuple(
        Frame(source, index * 2 + i, index * 2.0 + i, index * 2.0 + i, now + i, _scene(index)) for i in range(2)
    )
    return Segment(source, index, frames, index * 2.0, index * 2.0 + 2.0, 1.0)


class _Result:
    def __init__(self, text: str):
        from ..backends.base import Timings

        self.text, self.model, self.finish_reason, self.timings = text, "bench", "stop", Timings()
        self.prompt_tokens = self.visual_tokens = self.generated_tokens = 0


def run(cameras: int = 4, repeats: int = 5, live_events: int = 20,
        progress: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    from ..events import caption_event
    from ..config.http import HttpConfig
    from ..http import HttpServer, build_app
    from ..web.hub import SiteHub
    from ..web.routes import web_routes
    from .browser import close_driver, make_driver

    say = progress or (lambda message: None)
    names = [f"camera-{i + 1}" for i in range(cameras)]
    hub = SiteHub(names)
    for index, name in enumerate(names):
        hub.handle(caption_event(_segment(name, index), _Result(f"{name}: a person crosses the yard.")))
    http = HttpServer(build_app(web_routes(hub), HttpConfig()), "127.0.0.1", 0)
    http.start()
    base = f"http://127.0.0.1:{http.port}/"
    driver = make_driver()
    loads: list[dict[str, float]] = []
    latencies: list[float] = []
    try:
        for attempt in range(repeats):
            driver.get("about:blank")
            driver.execute_cdp_cmd("Network.clearBrowserCache", {})
            driver.get(base)
            first = _wait(driver, "const m = performance.getEntriesByName('first-caption'); "
                                  "return m.length ? m[0].startTime : null")
            _wait(driver, "return [...document.images].every(i => i.complete) || null")
            transferred = driver.execute_script(
                "const n = performance.getEntriesByType('navigation')[0]; "
                "return performance.getEntriesByType('resource').reduce((s, r) => s + r.transferSize, "
                "n ? n.transferSize : 0)"
            )
            loads.append({"first_caption_ms": float(first), "bytes": float(transferred)})
            say(f"load {attempt + 1}: first caption {first:.0f} ms, {transferred / 1024:.0f} KiB")
        _wait(driver, "return document.getElementById('live').textContent == 'live' || null")
        hub.handle(caption_event(_segment(names[0], 99), _Result("warm-up caption")))  # JPEG encoder, first image
        _wait(driver, "return document.body.textContent.includes('warm-up caption') || null")
        for index in range(live_events):
            text = f"live caption {index}"
            started = time.perf_counter()
            hub.handle(caption_event(_segment(names[0], 100 + index), _Result(text)))
            _wait(driver, f"return document.body.textContent.includes({text!r}) || null", poll_s=0.005)
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        close_driver(driver)
        hub.close()
        http.stop()
    return {"cameras": cameras, "loads": loads, "latencies_ms": latencies}


def _wait(driver, script: str, timeout_s: float = 15.0, poll_s: float = 0.01):
    deadline = time.monotonic() + timeout_s
    while True:
        value = driver.execute_script(script)
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page did not get there in {timeout_s:.0f} s: {script}")
        time.sleep(poll_s)


def table(report: dict[str, Any]) -> str:
    loads, latencies = report["loads"], report["latencies_ms"]
    first = [load["first_caption_ms"] for load in loads]
    size = [load["bytes"] for load in loads]
    p95 = sorted(latencies)[max(0, int(round(0.95 * len(latencies))) - 1)] if latencies else 0.0
    rows = [
        "| measure | median | worst | target |",
        "|---|---|---|---|",
        f"| first load transferred ({report['cameras']} cameras, snapshots included) | "
        f"{statistics.median(size) / 1024:.1f} KiB | {max(size) / 1024:.1f} KiB | < 300 KB |",
        f"| navigation to first caption on screen | {statistics.median(first):.0f} ms | {max(first):.0f} ms | < 1 s |",
        f"| caption event to screen (live, SSE) | {statistics.median(latencies):.0f} ms | p95 {p95:.0f} ms | |",
    ]
    return "\n".join(rows)
