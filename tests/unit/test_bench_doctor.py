"""`streamproc bench doctor`'s arithmetic (the bench itself runs doctor as processes; its numbers
are in docs/benchmarks.md, not asserted)."""
from __future__ import annotations

from pathlib import Path

from streamproc.bench.doctor import parse_importtime, table


def test_top_level_imports_slowest_first():
    text = ("import time: self [us] | cumulative | imported package\n"
            "import time:       100 |        100 |   numpy.core\n"
            "import time:       200 |     300000 | numpy\n"
            "import time:        50 |     500000 | streamproc.config\n"
            "noise\n")
    assert parse_importtime(text) == [("streamproc.config", 0.5), ("numpy", 0.3)]


def test_table_compares_cpu_with_this_checkout():
    results = {("as it is", "this"): [(1.0, 0.5), (2.0, 0.5)], ("as it is", "baseline (main)"): [(4.0, 0.75)] * 2}
    text = table(results, Path("d.yaml"), 0.5)
    assert "| as it is | this | 2 | 1.50 | 2.00 | 0.50 | 1.00 | yes |" in text
    assert "| as it is | baseline (main) | 2 | 4.00 | 4.00 | 0.75 | 1.50 | no |" in text
