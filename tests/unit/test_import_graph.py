"""The event contract stands on its own: streamproc.events imports no backend and no sink, and the
rules import no sink. Checked in a fresh interpreter, where nothing else was imported before."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def loaded_after(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(out.stdout))


def under(modules: set[str], *packages: str) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


def test_events_import_neither_backends_nor_sinks():
    modules = loaded_after("streamproc.events")
    assert "streamproc.events" in modules
    assert under(modules, "streamproc.backends", "streamproc.sinks", "streamproc.rules", "streamproc.service") == []


def test_rules_import_no_sinks_or_backends():
    modules = loaded_after("streamproc.rules.alerts")
    assert "streamproc.events" in modules
    assert under(modules, "streamproc.sinks", "streamproc.backends", "streamproc.service") == []


def test_the_check_sees_imports():  # the same check on a module that does import sinks
    assert under(loaded_after("streamproc.sinks.base"), "streamproc.sinks")
