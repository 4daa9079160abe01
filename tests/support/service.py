"""Helpers for tests of the running service: configs, `streamproc run` in a subprocess, HTTP probes.

    config = service_config(tiny_model_dir, sources=[camera("cam1", url)], mqtt=mqtt_section(...))
    with ServiceProcess(["-m", "streamproc", "run", str(write_config(tmp_path, config))], tmp_path) as svc:
        svc.wait_log(r"metrics on http://[^:]+:(\\d+)/metrics")
        svc.rss_bytes()

The subprocess logs to a file that the test polls (a pipe that nobody reads would fill up and
block the service); it is killed, with its whole process group, when the test ends.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import yaml

REPO = Path(__file__).resolve().parents[2]

# Small frames and short segments: the tiny model describes a segment in tens of milliseconds.
TINY_SAMPLING = {"fps": 1.0, "max_pixels": "112x112", "video_area_factor": 1.0}
TINY_SEGMENTING = {"seq_length": 256, "max_duration_s": 2}


def camera(name: str, url: str, **overrides: Any) -> dict:
    """A live source that notices an outage within seconds and retries quickly."""
    source = {
        "name": name,
        "url": url,
        "open_timeout_s": 5.0,
        "read_timeout_s": 2.0,
        "reconnect": {"initial_delay_s": 0.5, "multiplier": 2.0, "max_delay_s": 2.0},
    }
    source.update(overrides)
    return source


def service_config(
    model_dir: Path,
    sources: Sequence[dict],
    *,
    sinks: Optional[dict] = None,
    sampling: Optional[dict] = None,
    segmenting: Optional[dict] = None,
    service: Optional[dict] = None,
    max_new_tokens: int = 8,
    http: Optional[dict] = None,
) -> dict:
    """A `streamproc run` config (as a dict) over the tiny model on the CPU. The HTTP port is off
    unless `http` (or the deprecated `service.metrics`) turns it on."""
    config = {
        "sources": list(sources),
        "sampling": {**TINY_SAMPLING, **(sampling or {})},
        "segmenting": {**TINY_SEGMENTING, **(segmenting or {})},
        "backend": {"type": "hf", "model": str(model_dir), "device": "cpu", "dtype": "float32"},
        "generation": {"max_new_tokens": max_new_tokens},
        "sinks": sinks or {},
        "service": {"stats_interval_s": 2.0, **(service or {})},
    }
    if "metrics" not in config["service"]:
        config["http"] = {"enabled": False, **(http or {})}
    return config


def write_config(tmp_path: Path, config: dict, name: str = "service.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def wait_until(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy; returns its last value (falsy on timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval_s)


def child_env(env: Optional[dict] = None) -> dict:
    """The environment of a `python -m ...` child run outside the repository: offline, unbuffered,
    the repository on PYTHONPATH (for `-m tests...`), then `env`."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **(env or {})}


class ServiceProcess:
    """`python ARGS` in a working directory of its own under tmp_path (the repository on
    PYTHONPATH), its stderr (the log) and stdout in files."""

    def __init__(self, args: Sequence[str], tmp_path: Path, *, name: str = "service", env: Optional[dict] = None):
        self.log_path = tmp_path / f"{name}.log"
        self.out_path = tmp_path / f"{name}.out"
        self._log = self.log_path.open("wb")
        self._out = self.out_path.open("wb")
        # its own working directory, so that what a service writes to relative paths (the default
        # attachments folder) stays with this test; the repository on the path for `-m tests...`
        workdir = tmp_path / f"{name}.cwd"
        workdir.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, *args],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._log,
            env=child_env(env),
            start_new_session=True,  # its own process group: a Ctrl-C in the terminal goes to pytest
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout_s: float = 60.0) -> re.Match:
        """The first match of `pattern` in the log; fails early if the process exits first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while True:
            match = regex.search(self.log())
            if match:
                return match
            if not self.running:
                raise AssertionError(
                    f"the service exited ({self.process.returncode}) before logging {pattern!r}:\n{self.log()[-3000:]}"
                )
            if time.monotonic() >= deadline:
                raise AssertionError(f"no {pattern!r} in the log within {timeout_s} s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def metrics_port(self, timeout_s: float = 60.0) -> int:
        return int(self.wait_log(r"metrics on http://[^:/]+:(\d+)/metrics", timeout_s).group(1))

    def rss_bytes(self) -> int:
        """Resident memory of the service process itself (not its children)."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS for the service process")

    def send(self, sig: int) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout_s: float = 60.0) -> int:
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the service did not exit within {timeout_s} s:\n{self.log()[-3000:]}") from None

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(10)
        self._log.close()
        self._out.close()

    def __enter__(self) -> "ServiceProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- HTTP probes -------------------------------------------------------------------------------


def http_get(url: str, timeout_s: float = 10.0, key: Optional[str] = None) -> tuple[int, str, str]:
    """(status, content type, body) of a GET (with the API key, if given), error statuses included."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


def scrape(port: int, host: str = "127.0.0.1", key: Optional[str] = None) -> dict[tuple[str, tuple], float]:
    """Prometheus samples from /metrics: {(name, sorted label items): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    status, _, body = http_get(f"http://{host}:{port}/metrics", key=key)
    assert status == 200, body
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def healthz(port: int, host: str = "127.0.0.1") -> tuple[int, dict]:
    status, kind, body = http_get(f"http://{host}:{port}/healthz")
    assert kind.startswith("application/json"), (status, kind, body)
    return status, json.loads(body)
