"""Run-time switches of a running pipeline: pause describing a source, enable or disable a rule.

Home Assistant's switch entities (the MQTT plug-in's command topics) and the web view call
these; changes apply to the next segment, without a restart. A paused source keeps reading (a live camera stays connected and its status stays true), but its segments are
acknowledged without being described, and counted (`streamproc_segments_paused_total`).

The switches start from the config at every start: a pause is not remembered across restarts.
Listeners hear every change (the MQTT plug-in publishes the retained switch state, metrics and
the rule engine follow it; the composition root wires them).
Thread-safe: commands come from the MQTT thread, reads from the model workers.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Iterable, Literal

from .errors import ConfigError

log = logging.getLogger(__name__)

Kind = Literal["source", "rule"]
Listener = Callable[[Kind, str, bool], None]  # (kind, name, on): on = describing / rule enabled


class PipelineControl:
    def __init__(self, sources: Iterable[str], rules: Iterable[str]):
        self._sources = {name: False for name in sources}  # name -> paused
        self._rules = {name: True for name in rules}  # name -> enabled
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    @property
    def sources(self) -> list[str]:
        return list(self._sources)

    @property
    def rules(self) -> list[str]:
        return list(self._rules)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def pause(self, source: str) -> bool:
        return self.set_paused(source, True)

    def resume(self, source: str) -> bool:
        return self.set_paused(source, False)

    def set_paused(self, source: str, paused: bool) -> bool:
        """True if this changed anything. Unknown sources raise ConfigError (not retryable)."""
        with self._lock:
            if source not in self._sources:
                raise ConfigError(f"no source named {source!r} to pause or resume")
            changed = self._sources[source] != paused
            self._sources[source] = paused
        if changed:
            log.info("%s: describing %s", source, "paused" if paused else "resumed")
        self._tell("source", source, not paused)
        return changed

    def is_paused(self, source: str) -> bool:
        with self._lock:
            return self._sources.get(source, False)

    def enable_rule(self, rule: str, on: bool = True) -> bool:
        """True if this changed anything. Unknown rules raise ConfigError (not retryable)."""
        with self._lock:
            if rule not in self._rules:
                raise ConfigError(f"no rule named {rule!r} to enable or disable")
            changed = self._rules[rule] != on
            self._rules[rule] = on
        if changed:
            log.info("rule %s %s", rule, "enabled" if on else "disabled")
        self._tell("rule", rule, on)
        return changed

    def rule_enabled(self, rule: str) -> bool:
        with self._lock:
            return self._rules.get(rule, True)

    def snapshot(self) -> dict[str, dict[str, bool]]:
        with self._lock:
            return {
                "describing": {s: not paused for s, paused in self._sources.items()},
                "rules": dict(self._rules),
            }

    def _tell(self, kind: Kind, name: str, on: bool) -> None:
        # Every command is echoed (changed or not), so a switch whose state message was lost
        # settles on the next command.
        for listener in list(self._listeners):
            try:
                listener(kind, name, on)
            except Exception:  # one listener's trouble must not stop the switch
                log.exception("control listener failed for %s %s", kind, name)
