"""What a valid config still needs from this machine, checked before anything is loaded.

The schema (pydantic) checks the config's own words: types, ranges, URL schemes, host forms.
These checks look at the machine: the files a source names exist, the folders the sinks and the
store write into are writable (or can be made), TLS files exist, and some sink is on. They run
in the first second of `streamproc run` (and in `doctor` and `caption`), so a mistake is one line
naming the key and exit 2 before any model is touched, not a failure after minutes of loading.

Nothing here creates a file: a folder is checked by opening an unnamed temporary file in it (or
in the nearest folder above it that exists, where the run would create it).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

from ..errors import ConfigError
from .loader import PathKey, YamlDocument, format_path

if TYPE_CHECKING:  # pragma: no cover
    from .schema import Config


def require_a_sink(config: "Config") -> None:
    """Events that go nowhere are a mistake: refuse a config that enables no sink."""
    sinks = config.sinks
    if (
        sinks.stdout.enabled
        or sinks.files.dir is not None
        or (sinks.mqtt is not None and sinks.mqtt.enabled)
        or (sinks.webhook is not None and sinks.webhook.enabled)
        or config.store.enabled
    ):
        return
    raise ConfigError(
        "the config enables no sink, so events would go nowhere: add one of sinks.mqtt (host: ...), "
        "sinks.files (dir: ...), sinks.stdout (enabled: true) or store (enabled: true)"
    )


def folder_problem(folder: Path) -> Optional[str]:
    """Why files cannot be written in `folder` (None when they can). A folder that does not exist
    yet is fine if the nearest one above it that exists is writable: the run creates it."""
    folder = Path(folder).expanduser()
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            return f"{folder}: no folder above it exists"
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        # O_TMPFILE where the file system has it: nothing ever appears in the folder
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return f"cannot write in {existing}: {error.strerror or error}"
    return None


def file_target_problem(path: Path) -> Optional[str]:
    """Why a database or file cannot be made at `path` (None when it can)."""
    path = Path(path).expanduser()
    if path.is_dir():
        return f"{path} is a folder, not a file"
    return folder_problem(path.parent)


def _problems(config: "Config") -> Iterator[tuple[PathKey, str]]:
    """(key path, what is wrong) for every check that fails, in the config's order."""
    yield from _source_problems(config)
    yield from _sink_problems(config)
    if config.store.enabled:
        why = file_target_problem(config.store.path)
        if why:
            yield ("store", "path"), why


def _source_problems(config: "Config") -> Iterator[tuple[PathKey, str]]:
    for index, source in enumerate(config.sources):
        if not source.enabled or source.path is None:
            continue
        path = Path(source.path)
        if not path.exists():
            yield ("sources", index, "path"), f"{path}: no such file"
        elif path.is_dir():
            yield ("sources", index, "path"), f"{path} is a folder, not a video file"


def _sink_problems(config: "Config") -> Iterator[tuple[PathKey, str]]:
    sinks = config.sinks
    if sinks.files.dir is not None:
        why = folder_problem(sinks.files.dir)
        if why:
            yield ("sinks", "files", "dir"), why
    mqtt = sinks.mqtt
    if mqtt is not None and mqtt.enabled:
        why = file_target_problem(sinks.outbox.path)
        if why:
            yield ("sinks", "outbox", "path"), why
        if mqtt.tls.enabled:
            for key in ("ca_file", "cert_file", "key_file"):
                value = getattr(mqtt.tls, key)
                if value is not None and not Path(value).expanduser().is_file():
                    yield ("sinks", "mqtt", "tls", key), f"{value}: no such file"
    webhook = sinks.webhook
    if webhook is not None and webhook.enabled:
        why = file_target_problem(webhook.outbox)
        if why:
            yield ("sinks", "webhook", "outbox"), why
    if sinks.attachments.enabled:
        why = folder_problem(sinks.attachments.dir)
        if why:
            yield ("sinks", "attachments", "dir"), why


def config_problems(config: "Config") -> list[tuple[str, str]]:
    """(key, what is wrong) for each problem `check_config` would refuse (for `doctor`'s lines)."""
    return [(format_path(key), why) for key, why in _problems(config)]


def check_config(config: "Config", document: Optional[YamlDocument] = None) -> None:
    """Raise ConfigError (exit 2) for the first thing this machine cannot give the config: one
    line with the file and line (when `document` is known), the key and what is wrong; the others
    are counted after it."""
    require_a_sink(config)
    problems = list(_problems(config))
    if not problems:
        return
    lines = []
    for key, why in problems:
        line = document.line_of(key) if document is not None else None
        where = f"{document.source}:{line}: " if document is not None and line else (
            f"{document.source}: " if document is not None else "")
        lines.append(f"{where}{format_path(key)}: {why}")
    more = f" (and {len(lines) - 1} more: {'; '.join(lines[1:])})" if len(lines) > 1 else ""
    raise ConfigError(lines[0] + more)


def writable_or_error(folder: Path, what: str) -> None:
    """For command options (`caption --out`, `--store`): a UsageError naming the option."""
    from ..errors import UsageError

    why = folder_problem(folder)
    if why:
        raise UsageError(f"{what}: {why}")


__all__ = ["check_config", "config_problems", "file_target_problem", "folder_problem", "require_a_sink", "writable_or_error"]
