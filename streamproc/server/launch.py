"""Loading the engines for `streamproc serve` and running the app under uvicorn.

With the TPU backend the server makes `engines` backends over the one bmodel (libbmrt shares its
weights), each serving one request at a time; the transformers backend gets one.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from ..backends.base import Backend, GenerationParams, create_backend
from ..errors import ConfigError, UsageError
from .request import ServedModel

log = logging.getLogger(__name__)


def load_backends(backend_config: Any, engines: int) -> list[Backend]:
    if backend_config.type not in ("tpu", "hf"):
        raise ConfigError(f"streamproc serve serves a tpu or hf backend, not {backend_config.type!r}")
    count = engines if backend_config.type == "tpu" else 1
    backends: list[Backend] = []
    try:
        for _ in range(count):
            backends.append(create_backend(backend_config))
    except Exception:
        for backend in backends:
            backend.close()
        raise
    return backends


def context_length(backend: Backend) -> Optional[int]:
    """The model's context in tokens: a bmodel's sequence length, else the checkpoint's
    max_position_embeddings (transformers can run past it, but answers degrade)."""
    if backend.seq_length:
        return int(backend.seq_length)
    path = getattr(backend, "path", None)
    if path is None:
        return None
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("max_position_embeddings") or (config.get("text_config") or {}).get("max_position_embeddings")
    return int(value) if value else None


def can_sample(backend: Backend) -> bool:
    info = getattr(backend, "info", None)  # TpuBackend: the bmodel's streamproc._native.ModelInfo
    if hasattr(info, "has_sample_head"):
        return bool(info.has_sample_head)
    return True  # transformers samples on the host


def served_model(
    backend: Backend,
    name: Optional[str] = None,
    default_max_tokens: int = 512,
    greedy_fallback: bool = False,
    base_params: Optional[GenerationParams] = None,
) -> ServedModel:
    params = replace(base_params or GenerationParams(), do_sample=False)
    return ServedModel(
        name=name or backend.model_id,
        can_sample=can_sample(backend),
        context_length=context_length(backend),
        default_max_tokens=default_max_tokens,
        greedy_fallback=greedy_fallback,
        base_params=params,
    )


def uvicorn_server(app: Any, host: str, port: int):
    try:
        import uvicorn
    except ImportError:
        raise UsageError("streamproc serve needs uvicorn and starlette: pip install 'streamproc[serve]'") from None
    # access_log off: the app logs each request itself, without message content.
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


class ServerThread:
    """uvicorn in a background thread (benchmarks and tests in one process)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0):
        import socket

        if port == 0:
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
        self.host, self.port = host, port
        self.server = uvicorn_server(app, host, port)
        self.thread = threading.Thread(target=self.server.run, name="serve-http", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
