"""YAML loading that remembers where every key came from, with ${ENV} substitution.

Validation errors from pydantic carry a path like ("sources", 0, "url"); `YamlDocument.line_of`
maps that path back to the line in the file, so a user reads "camera.yaml:12: sources[0].url: ...".
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import ConfigError

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

PathKey = tuple  # a path of str keys and int indexes


@dataclass
class YamlDocument:
    """A parsed YAML file: plain data plus the line (1-based) of every key and list item."""

    data: Any
    source: str
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int | None:
        """Line of the deepest prefix of `path` that the file spells out."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


def format_path(path: PathKey) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], source: str, env: Mapping[str, str]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(f"{source}:{key_node.start_mark.line + 1}: keys must be plain names")
            key = key_node.value
            if key == "<<":
                raise ConfigError(f"{source}:{key_node.start_mark.line + 1}: YAML merge keys are not supported")
            if key in result:
                raise ConfigError(
                    f"{source}:{key_node.start_mark.line + 1}: {format_path(path + (key,))}: key given twice"
                )
            lines[path + (key,)] = key_node.start_mark.line + 1
            result[key] = _walk(value_node, path + (key,), lines, source, env)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, path + (i,), lines, source, env) for i, item in enumerate(node.value)]
    # Scalars: PyYAML's resolver decides the type (int, float, bool, null, str).
    constructor = yaml.SafeLoader("")
    try:
        value = constructor.construct_object(node, deep=True)
    finally:
        constructor.dispose()
    if isinstance(value, str) and "${" in value:
        return _substitute_env(value, path, node.start_mark.line + 1, source, env)
    return value


def _substitute_env(text: str, path: PathKey, line: int, source: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{source}:{line}: {format_path(path)}: environment variable {name} is not set "
            f"(write ${{{name}:-default}} to give a default)"
        )

    return _ENV_PATTERN.sub(replace, text)


def parse_yaml(text: str, source: str = "<config>", env: Mapping[str, str] | None = None) -> YamlDocument:
    env = os.environ if env is None else env
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    if node is None:
        return YamlDocument({}, source, {(): 1})
    lines: dict[PathKey, int] = {}
    data = _walk(node, (), lines, source, env)
    return YamlDocument(data, source, lines)


def read_yaml(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> YamlDocument:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc}") from None
    return parse_yaml(text, str(file), env)
