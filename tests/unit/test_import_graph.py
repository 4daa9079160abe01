"""The structure the code must keep (docs/architecture.md), checked on the source's import graph:
the layer rules between folders and no import cycle, file or folder level. And the event contract
stands on its own at run time (checked in a fresh interpreter)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.imports import ImportGraph

REPO = Path(__file__).resolve().parents[2]
GRAPH = ImportGraph.of_package(REPO / "streamproc")

# (importer folder, imported folder, why it must not): the data path knows no feature, features
# know no data path, and the boundaries below each have one owner.
FORBIDDEN = [
    ("pipeline", "web", "the pipeline is the data path only; the web view is a plug-in the root builds"),
    ("pipeline", "store", "the caption store is a plug-in the root builds"),
    ("pipeline", "sinks", "plug-ins reach the pipeline through the bus, not the other way"),
    ("pipeline", "http", "the HTTP port belongs to the root"),
    ("pipeline", "cluster", "cluster mode wraps the pipeline's publisher; the pipeline never knows it"),
    ("pipeline", "app", "the root builds the pipeline, not the other way"),
    ("web", "pipeline", "the web view gets what it shows from the root (stats, control), not the pipeline"),
    ("web", "app", "plug-ins are given their parts"),
    ("store", "pipeline", "the store is a plug-in"),
    ("store", "app", "plug-ins are given their parts"),
    ("web", "sinks", "shared encoders live in media/, below both"),
    ("bench", "cli", "benches are measured code; the CLI only parses their options"),
    ("sinks", "app", "plug-ins are given their parts"),
]


@pytest.mark.parametrize("importer, imported, why", FORBIDDEN, ids=[f"{a}-x-{b}" for a, b, _ in FORBIDDEN])
def test_layer_rule(importer, imported, why):
    assert GRAPH.importers(imported, importer) == [], why


def test_only_the_tpu_backend_imports_the_native_module():
    importers = sorted(source for source, targets in GRAPH.edges.items() if "streamproc._native" in targets)
    assert importers == ["streamproc.backends.tpu"]


def test_no_import_cycle_between_files():
    assert GRAPH.cycles(GRAPH.edges) == []


def test_no_import_cycle_between_folders():
    assert GRAPH.cycles(GRAPH.folder_edges()) == []


def test_the_graph_sees_lazy_imports_and_cycles():  # the checks above can fail
    edges = GRAPH.edges["streamproc.app"]
    assert "streamproc.web.plugin" in edges  # imported inside a method
    assert GRAPH.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert GRAPH.importers("pipeline", "app")  # the root does import the pipeline


def loaded_after(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(out.stdout))


def under(modules: set[str], *packages: str) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


def test_events_import_neither_backends_nor_sinks():
    modules = loaded_after("streamproc.events")
    assert "streamproc.events" in modules
    assert under(modules, "streamproc.backends", "streamproc.sinks", "streamproc.rules", "streamproc.pipeline") == []


def test_rules_import_no_sinks_or_backends():
    modules = loaded_after("streamproc.rules.alerts")
    assert "streamproc.events" in modules
    assert under(modules, "streamproc.sinks", "streamproc.backends", "streamproc.pipeline") == []


def test_every_name_imported_from_the_package_exists():
    """A lazy import of a name that was renamed or moved fails only when its function runs (the
    fault bench did, once): so every such name is looked up here."""
    import importlib
    import importlib.util

    missing = []
    for where, module, name in GRAPH.names:
        if name == "*":
            continue
        try:
            target = importlib.import_module(module)
        except ImportError as error:  # an optional dependency this machine lacks
            if "streamproc" in str(error):
                missing.append(f"{where}: {module} ({error})")
            continue
        if not hasattr(target, name) and importlib.util.find_spec(f"{module}.{name}") is None:
            missing.append(f"{where}: {module}.{name}")
    assert missing == []
