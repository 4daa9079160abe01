"""How `make test` spreads the suite over pytest-xdist workers (`--dist loadfile`, with this
scheduler from tests/conftest.py).

Like xdist's own loadfile: a test file is one unit, so its module fixtures are made once. But the
simulator tests (tests/tpu) each keep a core busy for seconds to minutes, and this machine has 2:
their files are dealt into SIMULATOR_LANES units, so no more than that many run at once while the
other workers run the tests that mostly wait on brokers, servers and subprocesses. Units go out in
the order the workers collected them (longest_first, from tests/conftest.py), not by size.

(xdist's loadgroup would say the same with marks, but it no longer groups under pytest 9.2:
pytest-dev/pytest-xdist#1386.)
"""
from __future__ import annotations

from collections import Counter

from xdist.scheduler import LoadScopeScheduling

SIMULATOR_DIR = "tests/tpu/"
SIMULATOR_LANES = 2
# What the costliest files take, in seconds (--durations of `make test` on 4 workers, 2026-12-07,
# a 2-core machine shared with other work, the converter set up before): only the
# order and the ratios matter, to hand the long units out first and to balance the lanes. A
# simulator file not listed counts UNLISTED_TEST_S a test; `make test` prints the slowest tests.
COST_S = {
    "tests/integration/test_cli.py": 870,
    "tests/integration/test_bad_inputs.py": 860,
    "tests/tpu/test_parity.py": 790,
    "tests/integration/test_first_hour.py": 750,
    "tests/tpu/test_convert.py": 420,
    "tests/integration/test_service_batch.py": 310,
    "tests/tpu/test_backend_e2e.py": 290,
    "tests/tpu/test_sampling.py": 230,
    "tests/integration/test_service_overload.py": 220,
    "tests/tpu/test_abort.py": 190,
    "tests/integration/test_caption_gate.py": 170,
    "tests/unit/test_file_sources.py": 170,
    "tests/unit/test_hf_backend.py": 160,
    "tests/tpu/test_serve_tpu.py": 160,
    "tests/integration/test_demo_twice.py": 140,
    "tests/integration/test_hardening.py": 130,
    "tests/tpu/test_concurrency.py": 120,
    "tests/unit/test_summarize.py": 120,
    "tests/unit/test_gate_accuracy.py": 110,
    "tests/tpu/test_lifecycle.py": 90,
    "tests/tpu/test_geometry_tpu.py": 90,
    "tests/tpu/test_errors.py": 70,
    "tests/cluster/test_camera_failover.py": 70,
    "tests/integration/test_service_sources.py": 70,
    "tests/unit/test_qwen_parity.py": 70,
    "tests/tpu/test_boundary.py": 20,
    "tests/tpu/test_service_sigterm.py": 10,
}
UNLISTED_TEST_S = 30


def is_simulator(nodeid: str) -> bool:
    return nodeid.startswith(SIMULATOR_DIR)


def deal_lanes(nodeids, lanes: int = SIMULATOR_LANES) -> dict[str, str]:
    """{simulator file: lane name}: the costliest files first, each to the least loaded lane."""
    counts = Counter(n.split("::", 1)[0] for n in nodeids if is_simulator(n))
    cost = {path: COST_S.get(path, UNLISTED_TEST_S * n) for path, n in counts.items()}
    load = [0] * lanes
    dealt = {}
    for path in sorted(cost, key=lambda p: (-cost[p], p)):
        lane = load.index(min(load))
        load[lane] += cost[path]
        dealt[path] = f"simulator-lane-{lane + 1}"
    return dealt


def longest_first(items: list) -> list:
    """The collected tests in the order their units should go out: the simulator files, then the
    other files by COST_S, then the rest in collection order; each file's tests together."""
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def rank(path: str) -> tuple[int, int]:
        return (0 if is_simulator(path) else 1, -COST_S.get(path, 0))

    return [item for path in sorted(files, key=rank) for item in files[path]]


class LaneScheduling(LoadScopeScheduling):
    def __init__(self, config, log=None):
        super().__init__(config, log)
        config.option.loadscopereorder = False  # keep the collected order (longest first)
        self._lanes: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._lanes is None:
            self._lanes = deal_lanes(next(iter(self.registered_collections.values())))
        path = nodeid.split("::", 1)[0]
        return self._lanes.get(path, path)
