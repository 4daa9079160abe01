"""Issue 22 item 5: the capacity simulation against the real service, time-scaled.

Four generated cameras (known change times) written as files, read by `App` at 10 x camera speed
through the real intake, segmenter (onset cuts), gate, urgent lanes, the worker and the describer's
joint call, with a stand-in backend that sleeps the BM1684X 3B profile's cost / 10 and streams its
verdicts first (streamproc/bench/live.py). The simulator, fed the same files through the same
ingest and gate, must predict what the service did: the same events judged, nothing dropped by
either, delays close (the bench's 10%, here with a margin for this loaded machine's scheduling).
"""
from __future__ import annotations

import shutil

import pytest

from streamproc.bench import capacity, live

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_the_service_does_what_the_simulation_says(tiny_model_dir, tmp_path):
    setup = live.Setup(cameras=4, speed=10.0, seconds=240, activity=0.3, rules=2)
    profile = capacity.Profile.load(capacity.DEFAULT_PROFILE)
    tokenizer = tmp_path / "tokenizer"  # only tokenizer.json: Qwen2.5-VL's published pixel limits, as the profile's
    tokenizer.mkdir()
    shutil.copy(tiny_model_dir / "tokenizer.json", tokenizer / "tokenizer.json")
    report = live.run(setup, profile, tokenizer, folder=tmp_path, progress=lambda line: None)
    simulated, measured = report["simulated"], report["live"]
    assert simulated.events >= 10 and measured.events == simulated.events, live.table(report)
    assert simulated.dropped == 0 and report["counters"]["dropped"] == 0
    # the same jobs, coalesced alike (a merge may differ where a segment ends as the chip frees)
    assert abs(report["counters"]["calls"] - simulated.calls) <= 0.15 * simulated.calls, live.table(report)
    for name, difference in live.agreement(report).items():
        assert difference <= 0.25, live.table(report)
