"""The composition root of a batch caption run (`streamproc caption`): the backend, the caption
store's sink when one is asked for, and the captioner, built in that order and closed in reverse.

    with BatchRun(config, out_dir, formats, store=store, gate=GateChoice.AUTO) as run:
        outcomes = run.videos(paths) + run.images(images)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..backends.base import create_backend
from ..batch.captioner import BatchCaptioner, FileOutcome, GateChoice
from ..errors import SinkError


class BatchRun:
    def __init__(
        self, config: Any, out_dir: Path, formats: Sequence[str], *, store: Any = None, force: bool = False,
        gate: GateChoice = GateChoice.OFF, unchanged: Any = None,
        on_progress: Optional[Callable[[Path, float, float], None]] = None,
        on_segment: Optional[Callable[[Path], None]] = None,
    ):
        self.config = config
        self.out_dir = Path(out_dir)
        self.formats = list(formats)
        self.store = store  # a StoreConfig: every caption and unchanged span goes there too
        self.options = dict(force=force, gate=gate, unchanged=unchanged, on_progress=on_progress, on_segment=on_segment)
        self.sinks: list[Any] = []
        self.store_key: Optional[str] = None
        self.backend: Any = None
        self.captioner: Optional[BatchCaptioner] = None

    def __enter__(self) -> "BatchRun":
        try:
            self._open_store()
            self.backend = create_backend(self.config.backend)
            self.captioner = BatchCaptioner(
                self.config, self.backend, self.out_dir, self.formats, sinks=self.sinks, store_key=self.store_key,
                **self.options,
            )
        except BaseException:
            self.close()
            raise
        return self

    def _open_store(self) -> None:
        if self.store is None:
            return
        from ..store.sink import StoreSink

        sink = StoreSink(self.store)
        sink.start()
        self.sinks.append(sink)
        if not sink.available:  # the service runs on without its store; a batch job asked for it
            raise SinkError(sink.error or f"cannot open the caption store {self.store.path}", retryable=False)
        self.store_key = str(Path(self.store.path).expanduser().resolve())

    def videos(self, paths: Sequence[Path], on_file: Optional[Callable[[FileOutcome], None]] = None) -> list:
        return self.captioner.run(paths, on_file=on_file) if paths else []

    def images(self, paths: Sequence[Path]) -> list:
        from ..batch.images import caption_images

        return caption_images(self.config, self.backend, paths, self.out_dir, self.formats,
                              force=self.options["force"], sinks=self.sinks, store_key=self.store_key)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        for sink in self.sinks:
            sink.stop()
        self.sinks = []

    def __exit__(self, *exc: object) -> None:
        self.close()
