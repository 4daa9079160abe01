"""`streamproc serve` in a subprocess for the tests, and request helpers (images as data: URLs).

    with serve_process(tmp_path, ["--model", str(tiny_model_dir)]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
"""
from __future__ import annotations

import base64
import contextlib
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from tests.support.service import ServiceProcess


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    def __init__(self, process: ServiceProcess, port: int):
        self.process = process
        self.port = port

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def log(self) -> str:
        return self.process.log()


@contextlib.contextmanager
def serve_process(
    tmp_path: Path, args: Sequence[str], env: Optional[dict] = None, name: str = "serve", start_timeout_s: float = 180
) -> Iterator[Served]:
    """`python -m streamproc serve ARGS --port FREE` until /healthz answers; killed afterwards."""
    port = free_port()
    command = ["-m", "streamproc", "-v", "serve", *args, "--port", str(port)]
    with ServiceProcess(command, tmp_path, name=name, env=env) as process:
        served = Served(process, port)
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{served.root}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if not process.running:
                raise AssertionError(f"streamproc serve exited ({process.process.returncode}):\n{process.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"streamproc serve did not start in {start_timeout_s} s:\n{process.log()[-3000:]}")
            time.sleep(0.2)
        yield served


def test_image(seed: int, height: int = 56, width: int = 84) -> np.ndarray:
    """A random RGB image (the tiny model's words are random anyway)."""
    return (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)


test_image.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def jpeg_bytes(image: np.ndarray) -> bytes:
    from streamproc.media.jpeg import encode_jpeg

    return encode_jpeg(image, quality=2)


def data_url(image: np.ndarray) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(image)).decode("ascii")


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def user(*parts: dict | str) -> list[dict]:
    """One user message from parts (strings become text parts)."""
    content = [{"type": "text", "text": p} if isinstance(p, str) else p for p in parts]
    return [{"role": "user", "content": content}]
