"""The MQTT topic layout (Frigate-style: one prefix, per-source subtrees, retained state topics).

    <prefix>/available                   online | offline            retained, last will
    <prefix>/stats                       stats event (JSON)
    <prefix>/<source>/status             status event (JSON)         retained
    <prefix>/<source>/captions           caption events (JSON)
    <prefix>/<source>/alerts             alert events (JSON)
    <prefix>/<source>/rules/<rule>/state ON | OFF                    retained
    <prefix>/<source>/snapshot           JPEG                        retained
"""
from __future__ import annotations

from dataclasses import dataclass

AVAILABLE_ONLINE = "online"
AVAILABLE_OFFLINE = "offline"
STATE_ON = "ON"
STATE_OFF = "OFF"


def check_level(name: str, what: str) -> str:
    """A single topic level: no separators or wildcards (source and rule names are validated
    by the config already; this guards events made by hand)."""
    if not name or any(c in name for c in "/#+\0"):
        raise ValueError(f"{what} {name!r} cannot be used as an MQTT topic level")
    return name


@dataclass(frozen=True)
class Topics:
    prefix: str = "streamproc"

    @property
    def available(self) -> str:
        return f"{self.prefix}/available"

    @property
    def stats(self) -> str:
        return f"{self.prefix}/stats"

    def status(self, source: str) -> str:
        return f"{self.prefix}/{check_level(source, 'source')}/status"

    def captions(self, source: str) -> str:
        return f"{self.prefix}/{check_level(source, 'source')}/captions"

    def alerts(self, source: str) -> str:
        return f"{self.prefix}/{check_level(source, 'source')}/alerts"

    def rule_state(self, source: str, rule: str) -> str:
        return f"{self.prefix}/{check_level(source, 'source')}/rules/{check_level(rule, 'rule')}/state"

    def snapshot(self, source: str) -> str:
        return f"{self.prefix}/{check_level(source, 'source')}/snapshot"
