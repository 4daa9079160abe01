"""Files and functions short enough to read in one sitting (docs/architecture.md): no function over
80 lines in streamproc/ or native/, and the pipeline, the data path, under 250 lines."""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIMIT = 80


def python_functions(root: Path) -> list[tuple[str, int]]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((f"{path.relative_to(REPO)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1))
    return found


_CPP_DEF = re.compile(r"^[A-Za-z_][\w:<>,\s\*&~]*\([^;{}]*\)\s*(const\s*)?(noexcept\s*)?(->\s*[\w:<>]+\s*)?\{\s*$")


def cpp_functions(root: Path) -> list[tuple[str, int]]:
    found = []
    for path in sorted([*root.glob("*.cpp"), *root.glob("*.h")]):
        found += [(f"{path.relative_to(REPO)}:{line} {name}", n) for line, name, n in cpp_bodies(path.read_text(encoding="utf-8"))]
    return found


def cpp_bodies(text: str) -> list[tuple[int, str, int]]:
    """(line, name, lines) of each function body at file or namespace level: a definition line
    ending in `{`, measured to its matching brace."""
    found = []
    depth, start, name = 0, None, ""
    namespaces: list[int] = []  # brace depths inside which namespaces opened
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("//")[0].strip()
        at_top = depth == (namespaces[-1] + 1 if namespaces else 0)
        if start is None and at_top and code.startswith("namespace") and code.endswith("{"):
            namespaces.append(depth)
        elif start is None and at_top and _CPP_DEF.match(code):
            start, name = number, code.split("(")[0].split()[-1]
        depth += code.count("{") - code.count("}")
        if namespaces and depth == namespaces[-1]:
            namespaces.pop()
        if start is not None and at_top is False and depth == (namespaces[-1] + 1 if namespaces else 0):
            found.append((start, name, number - start + 1))
            start = None
    return found


def test_no_function_is_longer_than_80_lines():
    long = [(where, n) for where, n in python_functions(REPO / "streamproc") + cpp_functions(REPO / "native") if n > LIMIT]
    assert long == []


def test_the_pipeline_is_under_250_lines():
    lines = (REPO / "streamproc" / "pipeline" / "pipeline.py").read_text(encoding="utf-8").count("\n")
    assert lines < 250


def test_the_measure_sees_long_functions():  # the check above can fail
    body = "\n".join(f"    x = {i}" for i in range(90))
    tree = ast.parse(f"def long():\n{body}\n")
    node = tree.body[0]
    assert node.end_lineno - node.lineno + 1 == 91
    cpp = "namespace a {\nint f(int x) {\n  if (x) {\n    return 1;\n  }\n  return 0;\n}\n}  // namespace a\nMACRO(m, n) {\n}\n"
    assert cpp_bodies(cpp) == [(2, "f", 6), (9, "MACRO", 2)]
    assert cpp_functions(REPO / "native"), "the C++ scan found no function at all"
