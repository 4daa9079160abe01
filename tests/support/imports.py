"""The import graph of the streamproc package, read from the source (no import is executed).

Every `import` and `from ... import` counts, at module level or inside a function (a lazy import is
still a dependency); only those under `if TYPE_CHECKING:` do not, since they never run. A name
imported from a package counts as its submodule when a file of that name exists.

    graph = ImportGraph.of_package(REPO / "streamproc")
    graph.edges["streamproc.app"]           # modules streamproc.app imports
    graph.folder_edges()                    # "pipeline" -> {"lanes", "gate", ...}
    graph.cycles(graph.edges)               # strongly connected groups of more than one node
    graph.names                             # (where, module, name) of every `from streamproc... import name`
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _from_target(base_parts: list[str], node: ast.ImportFrom) -> str:
    """The module a `from X import ...` reads, relative ones resolved against `base_parts` (the
    importing module's package)."""
    if not node.level:
        return node.module or ""
    anchor = base_parts[: len(base_parts) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def _runtime_nodes(tree: ast.AST) -> Iterable[ast.AST]:
    """Every node except what sits under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


@dataclass
class ImportGraph:
    package: str
    modules: set[str]
    edges: dict[str, set[str]] = field(default_factory=dict)
    # ("file:line", module, name) of every `from <this package>... import name`, those under
    # `if TYPE_CHECKING:` included: each name must exist in its module
    names: list[tuple[str, str, str]] = field(default_factory=list)

    @classmethod
    def of_package(cls, root: Path) -> "ImportGraph":
        files = {_module_name(root, path): path for path in root.rglob("*.py")}
        # the C++ extension (native/, built by CMake into the package) is a module too, built or not
        graph = cls(root.name, set(files) | {f"{root.name}._native"})
        for name, path in sorted(files.items()):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            base_parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            graph.edges[name] = graph._imports(name, base_parts, tree)
            where = path.relative_to(root.parent)
            graph.names += [
                (f"{where}:{node.lineno}", target, alias.name)
                for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for target in [_from_target(base_parts, node)] if target.split(".")[0] == graph.package
                for alias in node.names
            ]
        return graph

    def _imports(self, module: str, base_parts: list[str], tree: ast.AST) -> set[str]:
        found: set[str] = set()
        for node in _runtime_nodes(tree):
            if isinstance(node, ast.Import):
                found.update(self._resolve(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                target = _from_target(base_parts, node)
                for alias in node.names:
                    found.add(self._resolve(f"{target}.{alias.name}", fallback=target))
        return {name for name in found if name and name.split(".")[0] == self.package and name != module}

    def _resolve(self, dotted: str, fallback: str = "") -> str:
        """The deepest module of ours that `dotted` names (a module, or a name in one)."""
        parts = dotted.split(".")
        while parts:
            name = ".".join(parts)
            if name in self.modules:
                return name
            parts.pop()
        return fallback if fallback in self.modules else ""

    def folder(self, module: str) -> str:
        """The first level under the package: `streamproc.sinks.mqtt` -> "sinks", `streamproc.bus` -> "bus"."""
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else parts[0]

    def folder_edges(self) -> dict[str, set[str]]:
        edges: dict[str, set[str]] = {}
        for source, targets in self.edges.items():
            mine = self.folder(source)
            edges.setdefault(mine, set()).update(t for t in map(self.folder, targets) if t != mine)
        return edges

    def importers(self, target_folder: str, from_folder: str) -> list[tuple[str, str]]:
        """(module, imported module) pairs from `from_folder` into `target_folder`."""
        return sorted(
            (source, target)
            for source, targets in self.edges.items() if self.folder(source) == from_folder
            for target in targets if self.folder(target) == target_folder
        )

    @staticmethod
    def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
        """Strongly connected components with more than one node (Tarjan, iterative)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        found: list[list[str]] = []
        counter = 0
        for start in sorted(edges):
            if start in index:
                continue
            work = [(start, iter(sorted(edges.get(start, ()))))]
            index[start] = low[start] = counter
            counter += 1
            stack.append(start)
            on_stack.add(start)
            while work:
                node, children = work[-1]
                child = next(children, None)
                if child is not None:
                    if child not in index:
                        index[child] = low[child] = counter
                        counter += 1
                        stack.append(child)
                        on_stack.add(child)
                        work.append((child, iter(sorted(edges.get(child, ())))))
                    elif child in on_stack:
                        low[node] = min(low[node], index[child])
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
        return found
