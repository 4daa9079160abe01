"""bench capacity: profile figures with one meaning, the cost of a call with R rules (joint and
follow-up, history and not), the simulated chip (delays, coalescing, drops, urgency order), the
onset cut on a generated scene through the real gate, and a measured profile's arithmetic."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from streamproc.bench import capacity as C
from streamproc.bench.capsim import Scenario, cameras_per_chip, simulate
from streamproc.bench.policy import OLD, URGENT, Order, RulesMode, replace
from streamproc.bench.profile import PROFILES, Profile, call_cost
from streamproc.bench.scenes import Event, Scene
from streamproc.bench.tapes import Cuts, Recorded, Tape, record_scene

pytestmark = pytest.mark.timeout(120)
SEED = Profile.load(PROFILES / "bm1684x-3b-2k.json")
CALM = replace(URGENT, busy_caption_tokens=None, busy_frames=None, yield_tokens=None)  # no contention rules


def test_shipped_profiles_load_and_mark_every_figure():
    names = sorted(p.stem for p in PROFILES.glob("*.json"))
    assert {"bm1684x-3b-2k", "bm1684x-3b-2k-history", "bm1684x-7b-2k", "bm1688-3b-2k", "bm1684x-qwen3-vl-4b-2k"} <= set(names)
    for path in PROFILES.glob("*.json"):
        profile = Profile.load(path)
        assert profile.source and profile.kind in ("published", "estimate")
        for name in ("vit_s_per_768_tokens", "prefill_s", "host_s", "tokens_per_s"):
            assert getattr(profile, name).note, (path.name, name)
    assert SEED.kind == "published" and Profile.load(PROFILES / "bm1684x-7b-2k.json").kind == "estimate"


def test_a_qwen3_profile_plans_with_its_own_token_size_and_input_limit():
    from streamproc.bench.capacity import plan_frames
    from streamproc.bench.policy import URGENT

    qwen3 = Profile.load(PROFILES / "bm1684x-qwen3-vl-4b-2k.json")
    assert (qwen3.family, qwen3.token_pixels, qwen3.max_input) == ("qwen3-vl", 32, 1024)
    # 384x384 frames: 144 tokens and 12 of timestamp text a pair, in a 1024-token turn (no history)
    assert plan_frames(qwen3, URGENT) == 10
    assert plan_frames(SEED, URGENT) > plan_frames(qwen3, URGENT)


def test_the_published_first_token_is_not_counted_twice():
    # the seed's first token (3.79 s for a 768-token image) already holds its ViT and host work
    first_token = SEED.host_s.value + SEED.vit(768) + SEED.prefill(768 + 64)
    assert first_token == pytest.approx(3.79)
    cost = call_cost(SEED, replace(URGENT, caption_tokens=40, verdicts_first=False), 0, 768)
    assert cost.total == pytest.approx(3.79 + 40 / 15.5)


@pytest.mark.parametrize("bad", [{"tokens_per_second": 1}, {"prefill_s": {"value": 1, "kind": "guessed"}}])
def test_profiles_with_unknown_keys_or_kinds_are_refused(tmp_path, bad):
    data = json.loads((PROFILES / "bm1684x-3b-2k.json").read_text())
    data.update(bad)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="tokens_per_second|kind"):
        Profile.load(path)


def test_rules_cost_a_few_tokens_jointly_and_a_whole_call_each_without_history():
    joint = replace(URGENT, verdicts_first=False)
    base = call_cost(SEED, joint, 0, 1728).total
    assert call_cost(SEED, joint, 2, 1728).total == pytest.approx(base + 2 * 6 / 15.5)
    followup = replace(OLD, caption_tokens=40)
    caption = call_cost(SEED, followup, 0, 1728).total
    assert caption == pytest.approx(base)
    again = SEED.host_s.value + SEED.vit(1728) + SEED.prefill(2048) + 6 / 15.5  # ViT and prefill per rule
    assert call_cost(SEED, followup, 2, 1728).total == pytest.approx(caption + 2 * again)
    history = replace(SEED, history=True)
    cheap = SEED.followup_prefill_s.value + 6 / 15.5
    assert call_cost(history, followup, 2, 1728).total == pytest.approx(caption + 2 * cheap)
    first = call_cost(SEED, URGENT, 2, 1728)  # verdict lines first: the alert before the caption
    assert first.alert_at == pytest.approx(first.total - 40 / 15.5) and first.caption_at == first.total


def tape(rows: list[tuple[float, float, bool, str, bool]], events=(), length=None, frames=4) -> Tape:
    """rows: (start, end, describe, reason, onset)."""
    segments = [Recorded(a, b, i, frames, d, reason, onset, d) for i, (a, b, d, reason, onset) in enumerate(rows)]
    return Tape(segments, list(events), 192, length or rows[-1][1])


def scenario(tapes, cameras, policy, rules=2, warmup=0.0, fixed=()) -> Scenario:
    return Scenario(tapes, cameras, SEED, policy, rules, 18, warmup, tuple(fixed))


def test_event_delay_is_to_the_end_of_its_segment_plus_the_call():
    one = tape([(0, 10, True, "first", False), (10, 20, False, "unchanged", False), (20, 26, True, "change", True)],
               events=[21.5], length=100)
    out = simulate(scenario([one], 1, URGENT))
    cost = call_cost(SEED, URGENT, 2, 4 // 2 * 192)
    assert out.events == 1 and out.alert_delays == [pytest.approx(26 - 21.5 + cost.alert_at)]
    assert out.caption_delays == [pytest.approx(26 - 21.5 + cost.total)]
    assert out.missed == 0 and out.dropped == 0 and out.calls == 2


def test_waiting_segments_are_coalesced_and_nothing_is_dropped():
    rows = [(10 * i, 10 * i + 10, True, "change", False) for i in range(12)]
    busy = tape(rows, length=120)
    slow = replace(SEED, prefill_s=replace(SEED.prefill_s, value=20.0))  # one call outlasts two segments
    coalesced = simulate(Scenario([busy], 1, slow, URGENT, 0, 18, 0.0))
    lanes = simulate(Scenario([busy], 1, slow, replace(OLD, rules_mode=RulesMode.JOINT), 0, 18, 0.0))
    assert coalesced.dropped == 0 and coalesced.calls < 12
    assert lanes.dropped + lanes.dropped_warmup > 0 and lanes.calls > coalesced.calls


def test_urgency_serves_onset_before_heartbeats_round_robin_does_not():
    beat = tape([(0, 10, True, "heartbeat", False)], length=60)
    onset = tape([(6, 10, True, "change", True)], events=[7.0], length=60)
    busy = tape([(0, 9, True, "first", False)], length=60)  # the chip is busy when both arrive
    layout = ([beat, onset], 3, [busy])
    first = simulate(scenario(layout[0], layout[1], CALM, fixed=layout[2]))
    turn = simulate(scenario(layout[0], layout[1], replace(CALM, order=Order.ROUND_ROBIN), fixed=layout[2]))
    onset_call = call_cost(SEED, CALM, 2, 4 // 2 * 192)
    assert first.alert_delays[0] < turn.alert_delays[0]
    assert turn.alert_delays[0] - first.alert_delays[0] == pytest.approx(onset_call.total)  # the heartbeat's call


def test_cameras_per_chip_stops_at_the_first_count_that_misses_the_bar():
    rows = [(0, 18, True, "first", False)] + [(18 * i, 18 * i + 18, i % 5 == 0, "change" if i % 5 == 0 else
                                                "unchanged", False) for i in range(1, 100)]
    events = [18 * i + 14 for i in range(1, 100) if i % 5 == 0]
    sparse = tape(rows, events=events, frames=18)
    count, outcome = cameras_per_chip(scenario([sparse], 1, URGENT, warmup=300.0))
    assert count >= 1 and outcome is not None and outcome.fits()
    assert not simulate(scenario([sparse], count + 1, URGENT, warmup=300.0)).fits()


def test_change_starting_in_a_quiet_camera_closes_the_segment_early():
    scene = Scene(height=336, width=448, seed=4, noise=3.0, clock=True,
                  events=[Event("object", 40.5, x=0.4, seed=1), Event("person", 80.0, 6.0, 20.0, 0.5, seed=2)])
    urgent = record_scene(scene, 126, 18, Cuts.of(URGENT))
    fixed = record_scene(scene, 126, 18, Cuts.of(OLD))
    assert all(r.frames == 18 for r in fixed.segments)
    onsets = [r for r in urgent.segments if r.onset]
    assert onsets and onsets[0].describe and onsets[0].change and onsets[0].reason == "change"
    assert onsets[0].end == pytest.approx(44.0)  # the object shows at 41 s; 2 frames later (onset_s 2): 42, 43
    later = [r for r in record_scene(scene, 126, 18, Cuts.of(replace(URGENT, onset_s=4))).segments if r.onset]
    assert later[0].end == pytest.approx(46.0)  # onset_s 4: 4 frames later (an even count)
    assert not [r for r in urgent.segments if r.change and not r.describe]  # the gate misses nothing
    assert urgent.events and urgent.events[0] == pytest.approx(40.5)


def test_a_measured_profile_fills_the_same_fields_from_the_engines_timers(monkeypatch, tmp_path):
    from streamproc.bench import engine

    def row(vit, prefill, decode, host):
        return SimpleNamespace(visual_tokens=384, prompt_tokens=450, generated=40, frame_size=(336, 448), host_s=host,
                               device={"vit": vit, "prefill": prefill, "decode": decode})

    info = SimpleNamespace(chip="BM1684X", seq_length=2048, supports_history=False, prefill_dynamic=False)
    report = {"rows": [row(9.0, 9.0, 9.0, 9.0), row(0.5, 3.0, 2.0, 0.2), row(0.7, 3.2, 2.0, 0.3)],
              "runtime": "/opt/sophon/lib", "info": info}
    monkeypatch.setattr(engine, "run", lambda **kwargs: report)
    profile = C.measure_profile(tmp_path / "m.bmodel", tmp_path, None, tmp_path, progress=lambda m: None)
    assert profile.kind == "measured" and profile.frame == (336, 448) and profile.prefill_static
    assert profile.vit_s_per_768_tokens.value == pytest.approx(1.2)  # the first row warms up, left out
    assert profile.prefill_s.value == pytest.approx(3.1)  # prefill alone: the ViT is its own field
    assert profile.host_s.value == pytest.approx(0.25) and profile.tokens_per_s.value == pytest.approx(20.0)


def test_simulate_clips_gives_a_live_runs_delays_for_the_same_files(make_video):
    # the entry point for the time-scaled live run (item 5): same files, same ingest and gate
    clip = make_video(".mp4", duration_s=40, fps=10, width=320, height=240)
    slow = C.simulate_clips([clip, clip], SEED, URGENT, rules=2, k=1.0)
    fast = C.simulate_clips([clip, clip], SEED, URGENT, rules=2, k=10.0)
    assert slow.events > 0 and slow.calls > 1
    assert fast.alert_delays == pytest.approx([d / 10 for d in slow.alert_delays])
    assert fast.load == slow.load and fast.dropped == slow.dropped == 0


def test_a_count_is_judged_on_every_scene_not_only_the_first():
    from streamproc.bench.capsim import pooled

    a = tape([(0, 10, True, "first", False), (20, 26, True, "change", True)], events=[21.0], length=60)
    b = tape([(0, 10, True, "first", False), (30, 36, True, "change", True)], events=[31.0], length=60)
    assert simulate(scenario([a, b], 1, URGENT)).events == 1  # one camera: the first scene only
    assert pooled(scenario([a, b], 1, URGENT)).events == 2


def test_a_call_taken_while_others_wait_has_the_short_caption_and_fewer_frames():
    wide = tape([(0, 18, True, "change", False)], length=100, frames=18)
    out = simulate(scenario([wide, wide], 2, URGENT))
    busy = call_cost(SEED, replace(URGENT, caption_tokens=16), 2, URGENT.busy_frames // 2 * 192)  # thinned to busy_frames
    calm = call_cost(SEED, URGENT, 2, 18 // 2 * 192)  # the last one: nobody waits behind it
    assert out.contended == 1 and out.calls == 2  # both end at 18 s: the first call taken has the other waiting
    assert out.load * 100 == pytest.approx(busy.total + calm.total)
    plain = simulate(scenario([wide, wide], 2, CALM))
    assert plain.contended == 1 and plain.load * 100 == pytest.approx(2 * calm.total)


def test_an_onset_elsewhere_ends_the_running_caption_after_the_verdicts():
    running = tape([(0, 10, True, "first", False)], length=100)
    onset = tape([(11, 15, True, "change", True)], events=[12.0], length=100)
    out = simulate(scenario([running, onset], 2, URGENT))
    first = call_cost(SEED, URGENT, 2, 4 // 2 * 192)  # 10 s + ~4.0 s to the verdicts, ~6.6 s in all
    assert 10 + first.alert_at < 15 < 10 + first.total
    ended = 15 + 8 / 15.5  # the onset arrives at 15 s: 8 more caption tokens
    assert out.ended == 1
    assert out.alert_delays == [pytest.approx(ended + first.alert_at - 12.0)]  # the onset's own call starts then
    assert out.load * 100 == pytest.approx(ended - 10 + first.total)
    without_rules = simulate(scenario([running, onset], 2, URGENT, rules=0))
    assert without_rules.ended == 0  # no verdicts out: the caption is the alert and is never cut
    calm = simulate(scenario([running, onset], 2, CALM))
    assert calm.ended == 0 and calm.alert_delays == [pytest.approx(10 + first.total + first.alert_at - 12.0)]


def test_a_door_counts_as_change_only_where_its_drawn_panel_moves_2_px():
    from streamproc.bench.scenes import door_panel

    door = Event("door", 100.0, 2.4, x=0.3, until=130.99)  # closes from 130.99 s: 0.01 s of it before frame 131
    scene = Scene(height=336, width=448, seed=1, events=[door])
    assert door_panel(door, 130.0, 336) == door_panel(door, 131.0, 336)  # rounded to the same width
    assert not scene.changed_between(113.0, 131.0)  # a segment ending at frame 131 saw nothing move
    assert scene.changed_between(113.0, 132.0) and scene.changed_between(99.0, 101.0)
    assert [door_panel(door, float(t), 336) for t in range(130, 136)] == [7, 7, 29, 42, 43, 43]
    assert not scene.changed_between(133.0, 151.0)  # the swing's last step, 42 -> 43 px: one column is not a change
    assert scene.changed_between(132.0, 150.0)
