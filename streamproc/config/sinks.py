"""Config of event sinks: MQTT, the disk outbox, Home Assistant discovery, caption files, stdout,
a webhook, and the files attached to raised alerts.

See docs/mqtt.md for the topic layout and delivery guarantees these settings control.
"""
from __future__ import annotations

import enum
import ipaddress
import re
from pathlib import Path
from typing import Literal, Optional
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from .base import Section

QoS = Literal[0, 1, 2]

# RFC 1123 host names (underscores allowed: container and mDNS names use them)
_HOST_NAME = re.compile(r"^(?=.{1,253}\.?$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")


def check_host(value: str) -> str:
    """A host name or an IP address, nothing else: `mqtt://h`, `h:1883` and `h/x` are refused
    with what to write instead."""
    host = value.strip()
    if "://" in host:
        raise ValueError("give the host name alone, without a scheme (TLS is sinks.mqtt.tls, the port sinks.mqtt.port)")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host.strip("[]")
    except ValueError:
        pass
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and _HOST_NAME.match(name):
        raise ValueError(f"give the port as sinks.mqtt.port: {port}, not in the host")
    if not _HOST_NAME.match(host):
        raise ValueError(f"{host!r} is not a host name or an IP address")
    return host


def check_http_url(value: str, key: str) -> str:
    """An http(s) URL with a host and a valid port. The message never repeats the URL (it may
    carry a token)."""
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a port that is not a number in 0-65535
    except ValueError:
        raise ValueError(f"{key} is not a well-formed URL (its port?)") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{key} must start with http:// or https://")
    if any(c.isspace() for c in value):
        raise ValueError(f"{key} has a space in it (write it percent-encoded, %20)")
    if not parts.hostname:
        raise ValueError(f"{key} has no host name")
    if port == 0:
        raise ValueError(f"{key} has port 0")
    return value


class TlsConfig(Section):
    enabled: bool = False
    ca_file: Optional[Path] = Field(None, description="CA bundle that signed the broker's certificate; default: system CAs")
    cert_file: Optional[Path] = Field(None, description="client certificate (PEM), for brokers that require one")
    key_file: Optional[Path] = Field(None, description="client private key (PEM, unencrypted)")
    insecure: bool = Field(False, description="skip hostname verification (tests only)")

    @model_validator(mode="after")
    def _pair(self) -> "TlsConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class QosConfig(Section):
    """QoS per kind of topic. Captions, alerts, rule state and source status go through the disk
    outbox whatever their QoS; stats and snapshots are current values, published only while connected."""

    captions: QoS = 1
    alerts: QoS = 1
    state: QoS = 1
    status: QoS = 1
    stats: QoS = 0
    snapshots: QoS = 0


class MqttConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: Optional[str] = Field(None, description="default: streamproc-<hostname>")
    username: Optional[str] = None
    password: Optional[SecretStr] = None
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    keepalive_s: int = Field(30, ge=5, le=65535)
    connect_timeout_s: float = Field(10.0, gt=0, description="TCP + TLS + CONNACK must finish in this time")
    tls: TlsConfig = TlsConfig()
    topic_prefix: str = Field("streamproc", min_length=1, pattern=r"^[^#+\s/]([^#+\s]*[^#+\s/])?$")
    qos: QosConfig = QosConfig()
    snapshots: bool = Field(False, description="publish a JPEG of a representative frame per segment")
    # Not above the broker's own limit: mosquitto (max_inflight_messages, default 20) silently drops
    # QoS 2 messages beyond it from MQTT 3.1.1 clients; MQTT 5 brokers announce theirs, and it is obeyed.
    max_inflight: int = Field(20, ge=1, le=1000, description="messages sent and not yet acknowledged, at most")
    reconnect_min_delay_s: float = Field(1.0, gt=0)
    reconnect_max_delay_s: float = Field(30.0, gt=0)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)

    @model_validator(mode="after")
    def _checks(self) -> "MqttConfig":
        if self.password is not None and self.username is None:
            raise ValueError("password given without username")
        if self.reconnect_max_delay_s < self.reconnect_min_delay_s:
            raise ValueError("reconnect_max_delay_s must be >= reconnect_min_delay_s")
        return self


class OutboxConfig(Section):
    """Store-and-forward: every MQTT event is written here before it is sent, removed on PUBACK."""

    path: Path = Path("streamproc-outbox.sqlite")
    max_events: int = Field(100_000, ge=1, description="messages kept at most while the broker is away")
    when_full: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    # full: an append survives power loss (one fsync per event); normal: survives a process crash only.
    synchronous: Literal["full", "normal"] = "full"


DEFAULT_NODE_ID = "streamproc"


class HomeAssistantConfig(Section):
    enabled: bool = False
    discovery_prefix: str = Field("homeassistant", pattern=r"^[^#+\s]+$")
    node_id: str = Field(DEFAULT_NODE_ID, pattern=r"^[A-Za-z0-9_-]+$")
    device_name: Optional[str] = Field(
        None, min_length=1, max_length=64,
        description="the service device's name in HA (default: streamproc, or streamproc <node_id> for another node_id)",
    )
    support_url: Optional[str] = Field(
        None, pattern=r"^https?://\S+$", description="shown by HA as the integration's support link (origin.support_url)"
    )


class UnchangedCues(str, enum.Enum):
    """What SRT/WebVTT show for a span the scene-change gate found unchanged (JSONL always has
    its events): one cue saying so over the whole span, or nothing."""

    CUE = "cue"
    NONE = "none"


class FilesConfig(Section):
    dir: Optional[Path] = Field(None, description="write caption files here; none = no files")
    formats: list[Literal["jsonl", "srt", "vtt"]] = Field(default_factory=lambda: ["jsonl"], min_length=1)
    unchanged: UnchangedCues = Field(
        UnchangedCues.CUE, description="SRT/WebVTT for spans the gate found unchanged: cue (one cue says so) or none"
    )


class StdoutConfig(Section):
    enabled: bool = False
    format: Literal["text", "json"] = "text"


class WebhookConfig(Section):
    """HTTP POST of each event's JSON (ntfy, Node-RED, any receiver), through its own disk outbox:
    retried with backoff until the receiver answers 2xx, in order, nothing lost across restarts."""

    enabled: bool = True
    url: str = Field(description="where to POST (http:// or https://)")
    events: list[Literal["caption", "alert", "status", "summary"]] = Field(
        default_factory=lambda: ["alert"], min_length=1, description="event types to send"
    )
    # Values are secrets (tokens): write them as ${ENV} in the YAML; they are never logged.
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="extra request headers, e.g. Authorization")
    timeout_s: float = Field(10.0, gt=0, description="connect + response time per request")
    outbox: Path = Path("streamproc-webhook-outbox.sqlite")
    max_events: int = Field(10_000, ge=1, description="events kept at most while the receiver is away")
    when_full: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    retry_min_delay_s: float = Field(1.0, gt=0)
    retry_max_delay_s: float = Field(60.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value, "the webhook URL")


class AttachmentsConfig(Section):
    """A JPEG snapshot and a short MP4 clip of the segment that raised an alert, kept on disk,
    named in the alert event and served on the service's HTTP port under /attachments/."""

    enabled: bool = True
    dir: Path = Field(
        Path("streamproc-attachments"),
        description="where the files are kept; relative to the working directory (/var/lib/streamproc under the systemd unit)",
    )
    clip: bool = Field(True, description="also write a clip of the segment (else the snapshot only)")
    max_age_h: float = Field(72.0, gt=0, description="files older than this are removed")
    max_mb: float = Field(1024.0, gt=0, description="the oldest files are removed beyond this total")
    base_url: Optional[str] = Field(
        None, pattern=r"^https?://\S+$",
        description="absolute URL of the service's HTTP port for links in events; default: /attachments/... (relative)",
    )


class SinksConfig(Section):
    mqtt: Optional[MqttConfig] = None
    webhook: Optional[WebhookConfig] = None
    attachments: AttachmentsConfig = AttachmentsConfig()
    outbox: OutboxConfig = OutboxConfig()
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    files: FilesConfig = FilesConfig()
    stdout: StdoutConfig = StdoutConfig()

    @model_validator(mode="after")
    def _ha_needs_mqtt(self) -> "SinksConfig":
        if self.homeassistant.enabled and (self.mqtt is None or not self.mqtt.enabled):
            raise ValueError("homeassistant discovery needs the mqtt sink (sinks.mqtt)")
        return self
