"""The MQTT topic layout (Frigate-style: one prefix, per-source subtrees, retained state topics).

    <prefix>/available                   online | offline            retained, last will
    <prefix>/service                     service event (JSON): loading | ready | stopping   retained
    <prefix>/stats                       stats event (JSON)
    <prefix>/<source>/status             status event (JSON)         retained
    <prefix>/<source>/status/unchanged   unchanged events (JSON): segments the scene-change gate skipped
    <prefix>/<source>/captions           caption events (JSON)
    <prefix>/<source>/alerts             alert events (JSON)
    <prefix>/<source>/rules/<rule>/state ON | OFF                    retained
    <prefix>/<source>/snapshot           JPEG                        retained
    <prefix>/<source>/captions/last      the last caption event      retained (Home Assistant's sensor)
    <prefix>/<source>/alerts/snapshot    JPEG of the last raised alert   retained
    <prefix>/<source>/describe           ON | OFF (OFF = paused)     retained
    <prefix>/<source>/describe/set       ON | OFF                    command (Home Assistant switch)
    <prefix>/rules/<rule>/enabled        ON | OFF                    retained
    <prefix>/rules/<rule>/enabled/set    ON | OFF                    command (Home Assistant switch)
    <prefix>/<source>/summary            summary events (JSON)       retained (the latest)
    <prefix>/<source>/bridge/forwarded   cluster mode: the last stream sequence forwarded   retained
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

    @property
    def service(self) -> str:
        return f"{self.prefix}/service"

    def status(self, source: str) -> str:
        return f"{self.prefix}/{check_level(source, 'source')}/status"

    def unchanged(self, source: str) -> str:
        # under the status subtree, not on it: Home Assistant reads `status` for connectivity
        return f"{self.status(source)}/unchanged"

    def captions(self, source: str) -> str:
        return f"{self.prefix}/{check_level(source, 'source')}/captions"

    def alerts(self, source: str) -> str:
        return f"{self.prefix}/{check_level(source, 'source')}/alerts"

    def rule_state(self, source: str, rule: str) -> str:
        return f"{self.prefix}/{check_level(source, 'source')}/rules/{check_level(rule, 'rule')}/state"

    def snapshot(self, source: str) -> str:
        return f"{self.prefix}/{check_level(source, 'source')}/snapshot"

    def summary(self, source: str) -> str:
        return f"{self.prefix}/{check_level(source, 'source')}/summary"

    def last_caption(self, source: str) -> str:
        return f"{self.prefix}/{check_level(source, 'source')}/captions/last"

    def forwarded(self, source: str) -> str:
        """Cluster mode: the newest stream message of `source` the bridge forwarded (retained)."""
        return f"{self.prefix}/{source if source == '+' else check_level(source, 'source')}/bridge/forwarded"

    def alert_snapshot(self, source: str) -> str:
        return f"{self.prefix}/{check_level(source, 'source')}/alerts/snapshot"

    def describe(self, source: str) -> str:
        return f"{self.prefix}/{check_level(source, 'source')}/describe"

    def describe_set(self, source: str) -> str:
        return f"{self.describe(source)}/set"

    def rule_enabled(self, rule: str) -> str:
        return f"{self.prefix}/rules/{check_level(rule, 'rule')}/enabled"

    def rule_enabled_set(self, rule: str) -> str:
        return f"{self.rule_enabled(rule)}/set"
