"""Config of event sinks: MQTT, the disk outbox, Home Assistant discovery, caption files, stdout."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, SecretStr, model_validator

from .base import Section


class TlsConfig(Section):
    enabled: bool = False
    ca_file: Optional[Path] = None
    cert_file: Optional[Path] = None
    key_file: Optional[Path] = None
    insecure: bool = Field(False, description="skip hostname verification (tests only)")

    @model_validator(mode="after")
    def _pair(self) -> "TlsConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class QosConfig(Section):
    events: Literal[0, 1, 2] = 1
    alerts: Literal[0, 1, 2] = 1
    state: Literal[0, 1, 2] = 1
    status: Literal[0, 1, 2] = 1
    stats: Literal[0, 1, 2] = 0
    snapshots: Literal[0, 1, 2] = 0


class MqttConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: Optional[str] = Field(None, description="default: streamproc-<hostname>")
    username: Optional[str] = None
    password: Optional[SecretStr] = None
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    keepalive_s: int = Field(30, ge=5)
    tls: TlsConfig = TlsConfig()
    topic_prefix: str = Field("streamproc", min_length=1, pattern=r"^[^#+]+$")
    qos: QosConfig = QosConfig()
    snapshots: bool = Field(False, description="publish a JPEG of a representative frame per segment")
    reconnect_min_delay_s: float = Field(1.0, gt=0)
    reconnect_max_delay_s: float = Field(30.0, gt=0)


class OutboxConfig(Section):
    path: Path = Path("streamproc-outbox.sqlite")
    max_events: int = Field(100_000, ge=1)
    when_full: Literal["drop_oldest", "drop_newest"] = "drop_oldest"


class HomeAssistantConfig(Section):
    enabled: bool = False
    discovery_prefix: str = "homeassistant"
    node_id: str = Field("streamproc", pattern=r"^[A-Za-z0-9_-]+$")


class FilesConfig(Section):
    dir: Optional[Path] = None
    formats: list[Literal["jsonl", "srt", "vtt"]] = ["jsonl"]


class StdoutConfig(Section):
    enabled: bool = False
    format: Literal["text", "json"] = "text"


class SinksConfig(Section):
    mqtt: Optional[MqttConfig] = None
    outbox: OutboxConfig = OutboxConfig()
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    files: FilesConfig = FilesConfig()
    stdout: StdoutConfig = StdoutConfig()
