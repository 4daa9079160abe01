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


def is_simulator(nodeid: str) -> bool:
    return nodeid.startswith(SIMULATOR_DIR)


def deal_lanes(nodeids, lanes: int = SIMULATOR_LANES) -> dict[str, str]:
    """{simulator file: lane name}: the files with most tests first, each to the lane with fewest."""
    counts = Counter(n.split("::", 1)[0] for n in nodeids if is_simulator(n))
    load = [0] * lanes
    dealt = {}
    for path, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        lane = load.index(min(load))
        load[lane] += count
        dealt[path] = f"simulator-lane-{lane + 1}"
    return dealt


def longest_first(items: list) -> list:
    """The collected tests in the order their units should go out: the simulator files, then
    the files with slow tests, then the rest, each file's tests together and in their order."""
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def rank(path: str) -> int:
        if is_simulator(path):
            return 0
        return 1 if any(item.get_closest_marker("slow") for item in files[path]) else 2

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
