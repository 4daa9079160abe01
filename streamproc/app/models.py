"""The model side of the composition root: sizes from the model's files before any weight
loads, the backends (one per model worker), and segment sizing for the loaded model."""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from ..config import Config
from ..errors import ConfigError
from ..pipeline.planning import SegmentSizer

log = logging.getLogger(__name__)

BackendFactory = Callable[[], Any]


def fit_to_files(config: Config, rules: Any) -> Config:
    """The config with sizes taken from the model's files (a bmodel's nets, a checkpoint's
    configs); a value that does not fit fails here, before weights load, as does a prompt that
    leaves no room for frames."""
    if config.backend is None:
        return config
    from ..backends.geometry import fit_to_model, input_builder

    config, geometry = fit_to_model(config)
    builder = input_builder(config.backend)
    if geometry is not None and builder is not None:
        SegmentSizer(config, builder, rules, geometry.seq_length).check()
    return config


def worker_count(config: Config) -> int:
    backend = config.backend
    if backend is not None and backend.type == "tpu":
        return backend.engines
    return config.service.workers


def load_backends(
    factory: BackendFactory, progress: dict, stop: Optional[threading.Event] = None,
    on_progress: Optional[Callable[[], None]] = None,
) -> list[Any]:
    """`progress["of"]` backends, one after another, counted in `progress["loaded"]` (health shows
    it; `on_progress()` is called after each); stops early (returning what loaded) once `stop` is set."""
    count = progress["of"]
    log.info("loading %d model backend%s", count, "s" if count > 1 else "")
    backends: list[Any] = []
    for index in range(count):
        if stop is not None and stop.is_set():
            break
        backends.append(factory())
        progress["loaded"] = index + 1
        log.info("model backend %d of %d loaded", index + 1, count)
        if on_progress is not None:
            on_progress()
    return backends


def size_segments(config: Config, backends: list[Any], rules: Any) -> SegmentSizer:
    """Segment plans for the loaded model; checks the sampling against its vision limits."""
    if not backends:
        raise ConfigError("no model backend loaded")
    from ..qwen.budget import check_sampling

    builder = backends[0].inputs
    check_sampling(builder.vision, config.sampling)
    sizer = SegmentSizer(config, builder, rules, backends[0].seq_length)
    sizer.check()
    return sizer
