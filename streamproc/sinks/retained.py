"""What the MQTT sink leaves retained on the broker, and clearing what is no longer configured.

A retained message outlives the process: a camera or rule taken out of the config would leave its
state (`<prefix>/<source>/rules/<rule>/state`, `<prefix>/rules/<rule>/enabled`, the camera's
status, last caption and pictures) on the broker for every new subscriber, Home Assistant
included, for ever. So the sink keeps a record beside its outbox of the retained topics its
configuration may hold (`<outbox>.retained.json`), and at start clears, with an empty retained
message through the outbox, every topic of the previous record the current configuration no
longer produces (a changed `topic_prefix` clears the old prefix's topics too).

Only topics this sink's own earlier runs could have retained are cleared: another box or service
on the same prefix keeps its topics (a record is per outbox, and one outbox is one process).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

from .topics import Topics

log = logging.getLogger(__name__)

_VERSION = 1


def retained_topics(
    topics: Topics,
    source_names: Iterable[str],
    rules: Sequence,
    *,
    switches: bool = False,
    snapshots: bool = False,
) -> set[str]:
    """Every topic the sink may publish retained for this configuration (`rules`: RuleConfig)."""
    found = {topics.available, topics.service}
    for source in source_names:
        found |= {topics.status(source), topics.last_caption(source), topics.alert_snapshot(source),
                  topics.summary(source)}
        if snapshots:
            found.add(topics.snapshot(source))
        if switches:
            found.add(topics.describe(source))
        found |= {topics.rule_state(source, rule.name) for rule in rules if rule.applies_to(source)}
    if switches:
        found |= {topics.rule_enabled(rule.name) for rule in rules}
    return found


def record_path(outbox_path: Path) -> Path:
    return Path(f"{outbox_path}.retained.json")


def load_record(path: Path) -> set[str]:
    """The topics the previous run recorded (empty when there is no record, or it is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return set()
    except (OSError, ValueError) as error:
        log.warning("MQTT: the record of retained topics %s is unreadable (%s); nothing is cleared this time", path, error)
        return set()
    if not isinstance(data, dict) or data.get("v") != _VERSION or not isinstance(data.get("topics"), list):
        return set()
    return {t for t in data["topics"] if isinstance(t, str) and t}


def save_record(path: Path, topics: Iterable[str]) -> None:
    """Written after the clears are in the outbox: a crash in between clears them again next time."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps({"v": _VERSION, "topics": sorted(topics)}, indent=0), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as error:  # the outbox beside it was writable a moment ago: rare, and only tidiness is lost
        log.warning("MQTT: cannot write the record of retained topics %s: %s", path, error.strerror or error)


def stale(previous: set[str], current: set[str]) -> list[str]:
    """The topics to clear, in a stable order (per source, then rules)."""
    return sorted(previous - current)
