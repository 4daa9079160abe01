"""Loading the engines for `streamproc serve` and what the server says about its model.

With the TPU backend the server makes `engines` backends over the one bmodel (libbmrt shares its
weights), each serving one request at a time; the transformers backend gets one.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from ..backends.base import Backend, GenerationParams, create_backend
from ..errors import ConfigError
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
        name=name or default_model_name(backend.model_id),
        can_sample=can_sample(backend),
        context_length=context_length(backend),
        default_max_tokens=default_max_tokens,
        greedy_fallback=greedy_fallback,
        base_params=params,
    )


def default_model_name(model_id: str) -> str:
    """A local checkpoint folder is served under its name (`tiny-qwen`), never its path, which
    says where the box keeps its files; a hub id (`Qwen/Qwen2.5-VL-3B-Instruct`) and a bmodel's
    file name stay as they are."""
    path = Path(model_id).expanduser()
    return path.name if path.is_absolute() or path.exists() else model_id
