"""The delivery plug-ins after the model: MQTT (with Home Assistant discovery), the webhook,
caption files and stdout. `create_sinks` builds the ones a config's `sinks` section enables; heavy
or optional imports (paho for MQTT, PyAV for snapshots) happen only when one that needs them is
configured."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from ..bus import Plugin
    from ..config.rules import RuleConfig
    from ..config.sinks import SinksConfig

log = logging.getLogger(__name__)


def create_sinks(
    config: "SinksConfig",
    rules: Sequence["RuleConfig"] = (),
    source_names: Sequence[str] = (),
    *,
    file_stems: Optional[Mapping[str, str]] = None,
    files_dir: Optional[Path] = None,
    control: Any = None,
) -> list["Plugin"]:
    """The delivery plug-ins `config` (the `sinks` section) enables: stdout, caption files, MQTT
    (with Home Assistant discovery and, given `control`, its switches) and the webhook.

    `file_stems` maps a source to its caption file name (`streamproc caption` passes the video's
    stem); `files_dir` overrides `config.files.dir` (the caption command's --out).
    """
    plugins: list["Plugin"] = []
    if config.stdout.enabled:
        from ..sinks.stdout import StdoutSink

        plugins.append(StdoutSink(format=config.stdout.format))
    out_dir = files_dir if files_dir is not None else config.files.dir
    if out_dir is not None:
        from ..sinks.captions import CaptionFileSink

        plugins.append(CaptionFileSink(out_dir, config.files.formats, stems=file_stems, unchanged=config.files.unchanged))
    if config.mqtt is not None and config.mqtt.enabled:
        from ..sinks.mqtt import MqttSink  # imports paho only now

        plugins.append(MqttSink(
            config.mqtt, config.outbox, homeassistant=config.homeassistant if config.homeassistant.enabled else None,
            rules=rules, source_names=source_names, control=control,
        ))
    if config.webhook is not None and config.webhook.enabled:
        from ..sinks.webhook import WebhookSink

        plugins.append(WebhookSink(config.webhook))
    log.debug("sinks: %s", ", ".join(p.name for p in plugins) or "none")
    return plugins
