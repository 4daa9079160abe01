"""The gate on generated clips with known truth (streamproc/bench/gate.py, also `streamproc bench
gate`): static scenes with sensor noise, H.264 at 150 kbit/s, exposure ramps, a ticking timestamp,
foliage in an ignore region and all of these at once; and events: a person walking in, a door
opening, a small object left behind, plain and through H.264 with an exposure ramp.

The gate must skip at least 90% of the segments without change and miss none with change."""
from __future__ import annotations

import pytest

from streamproc.bench import gate

pytestmark = [pytest.mark.slow, pytest.mark.cpu_bound]  # ~20 s on 2 busy cores: 1,560 frames rendered, some encoded


def test_gate_skips_static_segments_and_misses_no_event():
    results = gate.evaluate(seeds=1)
    totals = gate.totals(results)
    assert totals["change"] >= 15 and totals["static"] >= 100  # the clips hold both, in numbers
    assert totals["missed"] == 0, f"segments with change skipped: {totals['missed_at']}"
    assert totals["static_skipped"] >= 0.9 * totals["static"], gate.table(results)
    kinds = {r.name: r for r in results}
    for name in ("person enters", "door opens", "object left behind"):
        assert kinds[name].true_change >= 2 and kinds[name].described_change == kinds[name].true_change
