"""`streamproc bench serve`: what the HTTP layer of `streamproc serve` adds to a request.

Overhead: the same streamed request (text and one image) two ways, interleaved so drift hits both:
- direct: the request body parsed and its inputs built (parse_chat), then the model call with a
  token callback (run_job), in this thread: what any caller of the engine has to do anyway;
- served: the same body POSTed to the app under uvicorn on 127.0.0.1 (the same backend object),
  read as server-sent events with http.client. The difference is JSON over HTTP, the event loop,
  the hand-off to the engine thread and back, and SSE framing.
Time to first token is the first non-empty text delta; total is the end of the answer.

Throughput: `clients` threads POST non-streamed requests through the server at once (the pool
has `engines` backends), against `engines` threads calling their backends directly.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

Progress = Callable[[str], None]


@dataclass
class Sample:
    first_s: float
    total_s: float


@dataclass
class Report:
    label: str
    engines: int
    max_tokens: int
    prompt_tokens: int = 0
    direct: list[Sample] = field(default_factory=list)
    served: list[Sample] = field(default_factory=list)
    throughput: dict[str, Any] = field(default_factory=dict)
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at the start and the end
    cores: int = 0


def request_body(model: str, max_tokens: int, stream: bool, image: bool = True) -> dict[str, Any]:
    from ..media.jpeg import encode_jpeg

    parts: list[dict[str, Any]] = []
    if image:
        pixels = (np.random.default_rng(0).random((56, 84, 3)) * 255).astype(np.uint8)
        url = "data:image/jpeg;base64," + base64.b64encode(encode_jpeg(pixels)).decode("ascii")
        parts.append({"type": "image_url", "image_url": {"url": url}})
    parts.append({"type": "text", "text": "What is in the picture?"})
    return {"model": model, "messages": [{"role": "user", "content": parts}], "max_tokens": max_tokens,
            "temperature": 0, "stream": stream}


def direct_once(backend: Any, served: Any, body: dict[str, Any]) -> tuple[Sample, int]:
    from ..openai_api.media import MediaPolicy
    from ..openai_api.pool import run_job
    from ..openai_api.request import parse_chat

    started = time.perf_counter()
    first: list[float] = []
    job = parse_chat(json.loads(json.dumps(body)), served, backend.inputs, MediaPolicy())
    outcome = run_job(backend, job, lambda text: first or first.append(time.perf_counter() - started), lambda: False)
    total = time.perf_counter() - started
    return Sample(first[0] if first else total, total), outcome.prompt_tokens


def served_once(port: int, body: dict[str, Any]) -> Sample:
    """One streamed request over a fresh connection (as most clients make one per request)."""
    data = json.dumps(body).encode("utf-8")
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request("POST", "/v1/chat/completions", body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"serve answered {response.status}: {response.read()[:300]!r}")
        first: Optional[float] = None
        while True:
            line = response.readline()
            if not line:
                raise RuntimeError("the event stream ended without [DONE]")
            if not line.startswith(b"data: "):
                continue
            payload = line[6:].strip()
            if payload == b"[DONE]":
                break
            if first is None:
                choices = json.loads(payload).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter() - started
        total = time.perf_counter() - started
    finally:
        connection.close()
    return Sample(first if first is not None else total, total)


def post_plain(port: int, body: dict[str, Any]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"serve answered {response.status}")
    finally:
        connection.close()


def _in_threads(count: int, work: Callable[[int], None]) -> float:
    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def run(
    backends: list[Any],
    label: str,
    requests: int,
    max_tokens: int,
    clients: int,
    rps_requests: int,
    progress: Progress,
) -> Report:
    from ..openai_api.app import create_app
    from ..http import HttpServer
    from ..openai_api.launch import served_model
    from ..openai_api.pool import EnginePool

    served = served_model(backends[0], "bench", default_max_tokens=max_tokens)
    streamed = request_body(served.name, max_tokens, stream=True)
    report = Report(label, len(backends), max_tokens, cores=os.cpu_count() or 0)
    start_load = os.getloadavg()[0]
    pool = EnginePool(backends, queue_size=max(clients, 1) * 2)
    with HttpServer(create_app(pool, served)) as server:
        progress("warming up")
        direct_once(backends[0], served, streamed)
        served_once(server.port, streamed)
        for index in range(requests):
            if index % 2:  # alternate which goes first, so warm caches favour neither
                report.served.append(served_once(server.port, streamed))
            sample, report.prompt_tokens = direct_once(backends[0], served, streamed)
            report.direct.append(sample)
            if not index % 2:
                report.served.append(served_once(server.port, streamed))
            progress(f"overhead {index + 1}/{requests}: direct {sample.total_s * 1e3:.1f} ms, "
                     f"served {report.served[-1].total_s * 1e3:.1f} ms")
        if rps_requests:
            plain = {**streamed, "stream": False}
            progress(f"throughput: {rps_requests} requests from {clients} clients through serve")
            per_client = [rps_requests // clients + (1 if i < rps_requests % clients else 0) for i in range(clients)]
            served_s = _in_threads(clients, lambda i: [post_plain(server.port, plain) for _ in range(per_client[i])])
            progress(f"throughput: {rps_requests} requests on {len(backends)} engines called directly")
            per_engine = [rps_requests // len(backends) + (1 if i < rps_requests % len(backends) else 0)
                          for i in range(len(backends))]
            direct_s = _in_threads(len(backends), lambda i: [direct_once(backends[i], served, plain)
                                                             for _ in range(per_engine[i])])
            report.throughput = {"requests": rps_requests, "clients": clients, "served_rps": rps_requests / served_s,
                                 "direct_rps": rps_requests / direct_s}
    report.load = (start_load, os.getloadavg()[0])
    return report


def _p50(values: list[float]) -> float:
    return statistics.median(values) * 1e3


def table(report: Report) -> str:
    d, s = report.direct, report.served
    rows = [
        f"{report.label}; {report.engines} engine(s); request: one 56x84 JPEG + text ({report.prompt_tokens} prompt "
        f"tokens), {report.max_tokens} new tokens, greedy, streamed; {len(d)} requests each way, interleaved (alternating which goes first); "
        f"load average {report.load[0]:.1f} -> {report.load[1]:.1f} on {report.cores} cores",
        "",
        "| p50 | direct ms | through serve ms | added ms |",
        "|---|---|---|---|",
    ]
    if d:
        paired_first = [b.first_s - a.first_s for a, b in zip(d, s)]
        paired_total = [b.total_s - a.total_s for a, b in zip(d, s)]
        rows.append(f"| time to first token | {_p50([x.first_s for x in d]):.1f} | {_p50([x.first_s for x in s]):.1f} "
                    f"| **{_p50(paired_first):.1f}** |")
        rows.append(f"| total | {_p50([x.total_s for x in d]):.1f} | {_p50([x.total_s for x in s]):.1f} "
                    f"| **{_p50(paired_total):.1f}** |")
        added = _p50(paired_total)
        spread = (max(x.total_s for x in d) - min(x.total_s for x in d)) * 1e3
        if spread > 50 * 5:  # direct calls alone differ by far more than the goal: no verdict
            verdict = f"not measurable here: direct calls alone vary by {spread:.0f} ms"
        else:
            verdict = f"{'meets' if max(added, _p50(paired_first)) <= 5 else 'misses'} the <= 5 ms goal"
        rows += ["", f"Added at p50 (median of paired differences): {added:.1f} ms total, "
                     f"{_p50(paired_first):.1f} ms to the first token: {verdict}."]
    t = report.throughput
    if t:
        rows += ["", "| throughput | requests/s |", "|---|---|",
                 f"| {report.engines} engine(s) called directly | {t['direct_rps']:.3f} |",
                 f"| {t['clients']} clients through serve | {t['served_rps']:.3f} |",
                 "", f"{t['requests']} non-streamed requests each way; serve / direct = "
                     f"{t['served_rps'] / t['direct_rps']:.2f}."]
    return "\n".join(rows)
