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


def test_a_measured_profile_comes_from_the_engines_timers(monkeypatch, tmp_path):
    # the arithmetic only: on hardware bench/engine.py's rows come from the TPU backend's timers
    # (on the CPU simulator one segment of the tiny fixture takes minutes, too slow for a test)
    from types import SimpleNamespace

    from streamproc.bench import engine

    def row(vit, prefill, decode):
        return SimpleNamespace(visual_tokens=384, generated=40, frame_size=(336, 448),
                               device={"vit": vit, "prefill": prefill, "decode": decode})

    report = {"rows": [row(9.0, 9.0, 9.0), row(0.5, 3.0, 2.0), row(0.7, 3.2, 2.0)], "runtime": "/opt/sophon/lib",
              "info": SimpleNamespace(chip="BM1684X", seq_length=2048)}
    monkeypatch.setattr(engine, "run", lambda **kwargs: report)
    profile = C.measure_profile(tmp_path / "m.bmodel", tmp_path, None, tmp_path, caption_tokens=40)
    assert profile.kind == "measured" and profile.frame == (336, 448) and profile.seq_length == 2048
    assert profile.vit_s_per_768_tokens == pytest.approx(1.2)  # the first row warms up, left out
    assert profile.first_token_s == pytest.approx(3.1) and profile.tokens_per_s == pytest.approx(20.0)
