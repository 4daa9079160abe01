"""bench capacity: timing profiles, the simulated scheduler over the real lanes, and a short run
end to end (generated scenes -> real segmenter and gate -> lanes -> one simulated chip)."""
from __future__ import annotations

import json

import pytest

from streamproc.bench import capacity as C

pytestmark = pytest.mark.timeout(120)


def test_shipped_profiles_load_and_state_their_source():
    names = sorted(p.stem for p in C.PROFILES.glob("*.json"))
    assert names == ["bm1684x-3b-2k", "bm1684x-3b-8k", "bm1684x-7b-2k", "bm1688-3b-2k"]
    for path in C.PROFILES.glob("*.json"):
        profile = C.Profile.load(path)
        assert profile.source and profile.kind in ("published", "estimate")
    seed = C.Profile.load(C.DEFAULT_PROFILE)
    # the seed's figures: 768 visual tokens of ViT, first token, 80 tokens at 15.5/s
    assert seed.latency(768) == pytest.approx(1.13 + 3.79 + 80 / 15.5)


def test_profile_with_unknown_keys_is_rejected(tmp_path):
    data = json.loads(C.DEFAULT_PROFILE.read_text())
    data["tokens_per_second"] = 1
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="tokens_per_second"):
        C.Profile.load(path)


def tape(described: list[bool], segment_s: float = 10.0) -> list[C.Recorded]:
    return [C.Recorded((i + 1) * segment_s, i, d, "change" if d else "unchanged", d, 768) for i, d in enumerate(described)]


def test_scheduler_finds_the_load_bound_and_counts_drops():
    profile = C.Profile.load(C.DEFAULT_PROFILE)  # 10.08 s per segment of 768 tokens
    every = [tape([True] * 60)]  # 10 s segments: one camera loads the chip 1.008x
    assert not C.simulate(every, 1, profile, False, 4)["real_time"]
    slow = [tape([True] * 60, segment_s=15.0)]  # 0.672 per camera
    one, two = C.simulate(slow, 1, profile, False, 4), C.simulate(slow, 2, profile, False, 4)
    assert one["real_time"] and one["dropped"] == 0 and one["load"] == pytest.approx(0.672, rel=0.01)
    assert not two["real_time"] and two["dropped"] > 0
    # a fifth of the segments passed by the gate: skipped ones are acked at once, cost nothing
    sparse = [tape([i % 5 == 0 for i in range(60)], segment_s=20.0)]
    cameras, run = C.largest_real_time(sparse, profile, True, 4)
    assert 8 <= cameras <= 10 and run["skipped"] == 48 * cameras


def test_a_short_run_end_to_end():
    profile = C.Profile.load(C.DEFAULT_PROFILE)
    report = C.run(profile, [0.15], tapes=1, minutes=4, progress=lambda m: None)
    off, on = report["rows"]
    assert off["gate"] is False and on["gate"] is True
    assert off["cameras"] == 1  # 0.64 of each segment's duration: one camera, not two
    assert 0.05 <= on["measured_activity"] <= 0.4  # from the generated events, not the parameter
    assert on["missed"] == 0 and on["described_share"] < 0.6
    assert on["cameras"] > off["cameras"]
    assert "simulated clock" in C.table(report)
