"""The sink interface and the factory that builds the configured sinks.

A sink receives every event (`handle`) from pipeline threads. It must return quickly: the MQTT sink
writes to its disk outbox and returns, a publisher thread does the network work. Heavy or optional
imports (paho, PyAV for snapshots) happen only when a sink that needs them is configured.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Protocol, Sequence, runtime_checkable

from ..events import Event, status_event

if TYPE_CHECKING:  # pragma: no cover
    from ..config.rules import RuleConfig
    from ..config.sinks import SinksConfig
    from ..config.store import StoreConfig

log = logging.getLogger(__name__)


@runtime_checkable
class Sink(Protocol):
    name: str

    def start(self) -> None:
        """Open files / start background threads. Called once before the first event."""

    def handle(self, event: Event) -> None:
        """Take one event. Thread-safe; never blocks the pipeline for long."""

    def source_status(self, source: str, state: str, detail: str = "") -> None:
        """A source went online / offline / reconnecting (sinks that do not care ignore it)."""

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything handed in so far is delivered; False if the time ran out."""

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush (bounded by `timeout_s`) and release resources. Undelivered MQTT events stay in the outbox."""


class BaseSink:
    """Defaults for the optional parts of the protocol."""

    name = "sink"

    def start(self) -> None:
        pass

    def handle(self, event: Event) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def source_status(self, source: str, state: str, detail: str = "") -> None:
        pass

    def flush(self, timeout_s: float = 10.0) -> bool:
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        pass


class StatusEventsMixin:
    """For sinks that want source status as ordinary events (MQTT publishes them retained)."""

    def source_status(self, source: str, state: str, detail: str = "") -> None:
        self.handle(status_event(source, state, detail))  # type: ignore[attr-defined]


def create_sinks(
    config: "SinksConfig",
    rules: Sequence["RuleConfig"] = (),
    source_names: Sequence[str] = (),
    *,
    file_stems: Optional[Mapping[str, str]] = None,
    files_dir: Optional[Path] = None,
    store: Optional["StoreConfig"] = None,
) -> list[Sink]:
    """The sinks `config` enables, not yet started.

    `rules` and `source_names` let the MQTT sink publish initial rule states and Home Assistant
    discovery. `file_stems` maps a source to its caption file name (`streamproc caption` passes the
    video's stem); `files_dir` overrides `config.files.dir` (the caption command's --out).
    """
    sinks: list[Sink] = []
    if config.stdout.enabled:
        from .stdout import StdoutSink

        sinks.append(StdoutSink(format=config.stdout.format))
    out_dir = files_dir if files_dir is not None else config.files.dir
    if out_dir is not None:
        from .captions import CaptionFileSink

        sinks.append(CaptionFileSink(out_dir, config.files.formats, stems=file_stems, unchanged=config.files.unchanged))
    if config.mqtt is not None and config.mqtt.enabled:
        from .mqtt import MqttSink  # imports paho only now

        sinks.append(
            MqttSink(
                config.mqtt,
                config.outbox,
                homeassistant=config.homeassistant if config.homeassistant.enabled else None,
                rules=rules,
                source_names=source_names,
            )
        )
    if store is not None and store.enabled:  # the caption store (streamproc/store, docs/store.md)
        from .store import StoreSink

        sinks.append(StoreSink(store))
    if config.webhook is not None and config.webhook.enabled:
        from .webhook import WebhookSink

        sinks.append(WebhookSink(config.webhook))
    log.debug("sinks: %s", ", ".join(s.name for s in sinks) or "none")
    return sinks
