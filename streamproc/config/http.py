"""Config of the service's HTTP port (`http:`): where it listens, its API keys, what it refuses.

One section for the port that `streamproc run` opens (health, metrics, the web view, the read API,
attachments, control); `streamproc serve` builds the same object from its flags. See
docs/security.md.

Keys are on by default beyond loopback: a port bound to anything but 127.0.0.1 / ::1 / localhost
without `api_key` is refused at load, unless `allow_anonymous: true` says that is meant.

Older configs put the port under `service.metrics` (host, port, enabled) and the key under
`web.api_key`; `migrate_aliases` moves them here with a one-line warning.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Any, Optional

from pydantic import Field, SecretStr, field_validator, model_validator

from .base import Section

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


class HttpLimits(Section):
    """What one client may cost the port. Defaults suit the service's port (small requests);
    `streamproc serve` raises the body limit to `--max-body-mb` (images come in the body)."""

    max_body_kb: int = Field(1024, ge=1, description="largest request body; larger ones get 413 before they are read")
    max_header_kb: int = Field(16, ge=1, le=1024, description="largest request head (request line and headers)")
    header_timeout_s: float = Field(10.0, gt=0, description="a request head must arrive whole within this")
    body_timeout_s: float = Field(30.0, gt=0, description="longest wait for the next part of a request body")
    keep_alive_s: float = Field(5.0, gt=0, description="an idle kept-alive connection is closed after this")
    max_connections: int = Field(200, ge=1, description="open connections (and requests) at most; more get 503")
    max_event_subscribers: int = Field(32, ge=1, description="browsers on the live event feed at most; more get 503")


class HttpConfig(Section):
    enabled: bool = Field(True, description="open the HTTP port (health, metrics, web view, read API)")
    host: str = Field("127.0.0.1", min_length=1, description="address to listen on; beyond loopback needs api_key")
    port: int = Field(9464, ge=0, le=65535, description="0 picks a free port")
    api_key: list[SecretStr] = Field(
        default_factory=list,
        description="key (or list of keys) every route but /healthz needs: Authorization: Bearer KEY; use ${ENV}",
    )
    allow_anonymous: bool = Field(False, description="allow a port beyond loopback without api_key (not advised)")
    public_metrics: bool = Field(False, description="serve /metrics without the key (for a scraper that cannot send one)")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="host names the port answers to besides its address, IP literals, localhost and this "
        "machine's name (a reverse proxy's public name); '*' turns the Host check off",
    )
    limits: HttpLimits = HttpLimits()

    @field_validator("api_key", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        if value is None:
            return []
        values = value if isinstance(value, list) else [value]
        # An empty value (${KEY:-} with KEY unset) is no key, so the loopback rule below decides.
        return [v for v in values if not (isinstance(v, str) and not v.strip())]

    @field_validator("allowed_hosts")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [name.strip().lower().rstrip(".") for name in value if name.strip()]

    @model_validator(mode="after")
    def _key_beyond_loopback(self) -> "HttpConfig":
        problem = exposure_problem(self.host, bool(self.keys()), self.allow_anonymous) if self.enabled else None
        if problem:
            raise ValueError(f"{problem}: set http.api_key (e.g. ${{STREAMPROC_API_KEY}}), "
                             "listen on 127.0.0.1, or write http.allow_anonymous: true")
        return self

    def keys(self) -> tuple[str, ...]:
        return tuple(k.get_secret_value() for k in self.api_key)


def is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposure_problem(host: str, has_key: bool, allow_anonymous: bool) -> Optional[str]:
    """Why listening on `host` as configured is refused, or None."""
    if has_key or allow_anonymous or is_loopback(host):
        return None
    return f"listening on {host} opens the port beyond this machine without an API key"


_ALIASES = {"enabled": "enabled", "host": "host", "port": "port"}


def migrate_aliases(data: Any) -> Any:
    """The raw config with `service.metrics.{enabled,host,port}` and `web.api_key` moved under
    `http:` (a warning each); a value given in both places must agree."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    service, web = data.get("service"), data.get("web")
    moved: dict[str, tuple[str, Any]] = {}
    if isinstance(service, dict) and "metrics" in service:
        service = dict(service)
        metrics = service.pop("metrics")
        if isinstance(metrics, dict):
            moved.update({_ALIASES.get(k, k): (f"service.metrics.{k}", v) for k, v in metrics.items()})
        data["service"] = service
    if isinstance(web, dict) and "api_key" in web:
        web = dict(web)
        moved["api_key"] = ("web.api_key", web.pop("api_key"))
        data["web"] = web
    if not moved:
        return data
    http = dict(data.get("http") or {}) if isinstance(data.get("http"), (dict, type(None))) else data["http"]
    if not isinstance(http, dict):
        return data  # the section's own validation says what is wrong
    for key, (old, value) in moved.items():
        if key in http and http[key] != value:
            raise ValueError(f"{old} and http.{key} are both given and differ: keep http.{key} only")
        http[key] = value
    olds = ", ".join(old for old, _ in moved.values())
    news = ", ".join(f"http.{key}" for key in moved)
    log.warning("config: %s %s deprecated: write %s instead", olds, "is" if len(moved) == 1 else "are", news)
    data["http"] = http
    return data
