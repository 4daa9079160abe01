"""Run `streamproc` as a subprocess and check what a user sees: exit code, error lines, secrets.

`fast=True` runs it through tests/support/fast_backend.py (the tiny model's real input builder,
a canned answer, no torch), so a case costs well under a second.
"""
from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import yaml

from tests.support.service import child_env


# Every character with a meaning in a URL (RFC 3986 gen-delims and sub-delims) plus '%' and a
# few FFmpeg passes through unencoded. Passwords in the tests are made of them.
URL_SPECIAL = ":/?#[]@!$&'()*+,;=%"

ERROR_LINE = re.compile(r'^(streamproc: error: |\S+ (ERROR|CRITICAL) |\{.*"level": "(error|critical)")')


def password(i: int = 0) -> str:
    """A distinctive password holding every URL-special character (rotated, so each differs)."""
    k = i % len(URL_SPECIAL)
    specials = URL_SPECIAL[k:] + URL_SPECIAL[:k]
    return f"Zq{i}x{specials}Kw9"


def fast_config(model: Path, sources: Sequence[dict], **sections) -> dict:
    config = {
        "sources": list(sources),
        "sampling": {"fps": 1.0, "max_pixels": "112x112", "video_area_factor": 1.0},
        "segmenting": {"seq_length": 256, "max_duration_s": 2},
        "backend": {"type": "hf", "model": str(model), "device": "cpu", "dtype": "float32"},
        "generation": {"max_new_tokens": 8},
        "sinks": {"stdout": {"enabled": True, "format": "json"}},
        "service": {"stats_interval_s": 60.0, "shutdown_timeout_s": 1.0},
        "http": {"enabled": False},
    }
    for key, value in sections.items():
        if key != "backend" and isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    if "metrics" in config["service"]:  # the port's deprecated place: it says all about the port
        config.pop("http", None)
    return config


def write_yaml(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if ERROR_LINE.match(line)]

    def events(self) -> list[dict]:
        import json

        out = []
        for line in self.stdout.splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def captions_of(self, source: str) -> list[dict]:
        return [e for e in self.events() if e.get("type") == "caption" and e.get("source") == source]

    def describe(self) -> str:
        return f"rc={self.rc}\n--- stderr ---\n{self.stderr[-4000:]}\n--- stdout ---\n{self.stdout[-2000:]}"


def run_cli(args: Sequence[str], *, fast: bool = True, env: Optional[dict] = None, timeout_s: float = 60.0,
            cwd: Optional[Path] = None) -> Outcome:
    """`python -m streamproc ARGS` (or the fast stand-in backend's entry); by default in a scratch
    working directory, so that what it writes to relative paths does not land in the repository."""
    module = "tests.support.fast_backend" if fast else "streamproc"
    with tempfile.TemporaryDirectory(prefix="streamproc-cli-") as scratch:
        done = subprocess.run(
            [sys.executable, "-m", module, *args], cwd=cwd or scratch, env=child_env(env), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout_s,
        )
    return Outcome(done.returncode, done.stdout, done.stderr)


def outbox_bytes(path: Optional[Path]) -> bytes:
    """Every byte of an outbox (database, WAL), and its rows' payloads decoded."""
    if path is None:
        return b""
    data = b""
    for candidate in (path, Path(f"{path}-wal")):
        if candidate.is_file():
            data += candidate.read_bytes()
    if path.is_file():
        try:
            with sqlite3.connect(str(path)) as db:
                data += b"\n".join(bytes(row[0]) + row[1].encode() for row in db.execute("SELECT payload, topic FROM outbox"))
        except sqlite3.Error:
            pass
    return data


def assert_no_secret(secrets: Iterable[str], *texts: str | bytes) -> None:
    """No secret, and no piece of one (its letter-digit runs of 3+, as a half-masked URL would
    show them), in any of `texts`."""
    for secret in secrets:
        pieces = {secret, *(p for p in re.findall(r"[A-Za-z0-9]{3,}", secret))}
        for text in texts:
            haystack = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
            for piece in pieces:
                assert piece not in haystack, f"{piece!r} of secret {secret!r} leaked in:\n{haystack[-3000:]}"
