"""`streamproc convert`'s geometry against the seed's published settings, through the service's
own segment planner: 2K context -> 20 s of 672x896 quarter-resolution video (192 tokens per frame
pair), 8K -> 80 s, and history builds with the input length the plan needs. No converter."""
from __future__ import annotations

import pytest

from streamproc.convert.plan import parse_size, plan_conversion
from streamproc.convert.run import BuildOptions
from streamproc.errors import UsageError
from streamproc.ingest.segmenter import plan_segments

SEED = dict(max_pixels=(672, 896), prompt_reserve=64, answer_reserve=64)


def test_2k_context_holds_20_seconds_at_672x896():
    plan = plan_conversion(segment_s=20, **SEED)
    assert plan.frame_size == (336, 448) and plan.tokens_per_pair == 192  # quarter area
    assert plan.seq_length == 2048 and plan.visual_tokens == 1920 and plan.max_patches == 3072
    # The service, given this bmodel, cuts 20 s segments: the same planner, the other way round.
    assert plan_segments(2048, 336, 448, 1.0, 64, 64).duration_s == 20 == plan.segments.duration_s


def test_8k_context_holds_80_seconds():
    plan = plan_conversion(segment_s=80, **SEED)
    assert plan.seq_length == 8192 and plan.visual_tokens == 80 // 2 * 192
    assert plan.segments.duration_s >= 80
    assert plan_conversion(segment_s=84, **SEED).seq_length == 8192  # the 8K model's own limit
    assert plan_conversion(segment_s=86, **SEED).seq_length > 8192


def test_prompt_and_rule_reserves_grow_the_sequence():
    # A long prompt plus a rule question (what service.planning.prompt_reserve measures) no longer
    # fits 20 s in 2048 tokens: the plan takes the next length instead of cutting shorter segments.
    plan = plan_conversion(segment_s=20, max_pixels=(672, 896), prompt_reserve=200, answer_reserve=64)
    assert plan.seq_length == 3072 and plan.segments.duration_s >= 20


def test_history_builds_take_the_turn_the_plan_needs():
    plan = plan_conversion(segment_s=20, history=True, **SEED)
    # The caption turn (frames + prompt) is 1984 tokens; a chunk is at most half the sequence
    # (tpu_mlir 1.21's limit for --max_input_length), so it runs in two chunks of 1024.
    assert plan.input_length == 1024
    small = plan_conversion(segment_s=4, max_pixels=(112, 224), prompt_reserve=64, answer_reserve=64, history=True)
    assert (small.seq_length, small.tokens_per_pair, small.input_length) == (256, 8, 128)  # 16 + 64 -> 128
    assert BuildOptions(history=True).flags(small)[-3:] == ["--use_history_kv", "--chunk_length", "128"]
    old = BuildOptions(history=True, old_layout=True).flags(small)
    assert old[old.index("--use_block_with_kv") + 1 :][:2] == ["--max_input_length", "128"]
    assert plan_conversion(segment_s=20, **SEED).input_length is None  # not a history build


def test_bad_geometry_is_one_line():
    with pytest.raises(UsageError, match="multiples of 28"):
        parse_size("670x896")
    with pytest.raises(UsageError, match="too short"):
        plan_conversion(segment_s=20, seq_length=1024, **SEED)
    assert parse_size("672x896") == (672, 896)
