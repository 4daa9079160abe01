"""One validated config tree, loaded from YAML. Errors name the key and the file line."""
from __future__ import annotations

import os
from typing import Any, Mapping

from pydantic import ValidationError

from ..errors import ConfigError
from .loader import YamlDocument, format_path, parse_yaml, read_yaml
from .schema import Config

__all__ = ["Config", "ConfigError", "load_config", "config_from_text", "config_from_data"]


def _describe(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


def _validate(document: YamlDocument) -> Config:
    if not isinstance(document.data, dict):
        raise ConfigError(f"{document.source}:1: the config must be a mapping of sections")
    try:
        return Config.model_validate(document.data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            # Union members add their tag to the path (e.g. backend.hf.model); drop it.
            loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and part in ("hf", "tpu", "openai")))
            line = document.line_of(loc)
            where = f"{document.source}:{line}" if line else document.source
            problems.append(f"{where}: {format_path(loc)}: {_describe(error)}")
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:])})" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more) from None


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None, *, check: bool = False) -> Config:
    """Read and validate a YAML config file. `check`: also check it against this machine
    (config/checks.py: source files, writable folders, TLS files, a sink), naming the line."""
    document = read_yaml(path, env)
    config = _validate(document)
    if check:
        from .checks import check_config

        check_config(config, document)
    return config


def config_from_text(text: str, source: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    return _validate(parse_yaml(text, source, env))


def config_from_data(data: Mapping[str, Any]) -> Config:
    """Validate an in-memory tree (defaults for the demo, tests)."""
    return _validate(YamlDocument(dict(data), "<defaults>", {}))
