"""TpuBackend end to end: a generated video -> VideoSource -> segmenter -> InputBuilder.build_segment
-> TpuBackend (the native engine on the simulator) gives transformers' text; and follow_up()
answers several questions about one segment independently, over the KV cache."""
from __future__ import annotations

import pytest

from streamproc.backends import GenerationParams
from streamproc.config import config_from_data
from streamproc.ingest.segmenter import segment_stream, segmenter_for
from streamproc.ingest.sources import VideoSource

from .support import assert_greedy_parity

pytestmark = [pytest.mark.slow, pytest.mark.cpu_bound]

SEQ_LENGTH = 256
PROMPT = "Describe what happens in this video in one sentence."
PARAMS = GenerationParams(max_new_tokens=6)
FOLLOW = GenerationParams(max_new_tokens=4)


@pytest.fixture(scope="module")
def segment(make_video):
    """The first segment of a generated clip: 4 frames at 1 fps, 112x112 (two frame pairs =
    128 patches, one full vit call of the s256 fixtures)."""
    video = make_video(duration_s=5, fps=10, width=224, height=224, gop=10)
    config = config_from_data(
        {
            "sources": [{"name": "cam", "path": str(video)}],
            "sampling": {"fps": 1.0, "max_pixels": 112 * 112, "video_area_factor": 1.0},
            "segmenting": {"seq_length": SEQ_LENGTH, "prompt_reserve": 48, "answer_reserve": 16, "max_duration_s": 4},
        }
    )
    source = VideoSource(config.sources[0], config.sampling)
    segmenter = segmenter_for(source.name, config.sampling, config.segmenting, SEQ_LENGTH)
    first = next(iter(segment_stream(source.items(), segmenter)))
    assert len(first.frames) == 4 and first.frame_size == (112, 112)
    return first


def test_segment_text_matches_transformers(tpu_backend, hf_bf16, segment):
    backend = tpu_backend("dynamic_bf16_s256")
    inputs = backend.inputs.build_segment(segment, PROMPT)
    assert inputs.visual_tokens == 32 and len(backend.vision_chunks(inputs)) == 1
    result = backend.describe(inputs, PARAMS)
    reference = hf_bf16.describe(inputs, PARAMS)
    assert result.token_ids == reference.token_ids
    # HfBackend keeps the leading space BPE decoding gives; TpuBackend strips its text.
    assert result.text == reference.text.strip() and result.finish_reason == reference.finish_reason
    assert result.prompt_tokens == inputs.total_tokens and result.visual_tokens == 32
    assert result.model == "dynamic_bf16_s256.bmodel"
    t = result.timings
    assert t.vision_s > 0 and t.prefill_s > 0 and t.total_s >= t.vision_s + t.prefill_s + t.decode_s
    times = backend.last_times.engine  # the engine's own timers: device time within each phase
    assert 0 < times.vit_device_s <= times.vit_s and 0 < times.prefill_device_s <= times.prefill_s
    assert backend.last_times.native_call_s >= times.vit_s + times.prefill_s + times.decode_s


def test_follow_up_questions_are_independent(tpu_backend, hf_bf16, segment):
    backend = tpu_backend("history_bf16_s256_c64")
    assert backend.capabilities.keeps_history and backend.info.supports_history
    engine = backend._engine
    inputs = backend.inputs.build_segment(segment, PROMPT)
    answer = backend.describe(inputs, FOLLOW)
    person = backend.inputs.follow_up(inputs, answer.token_ids, "Is there a person?")
    colour = backend.inputs.follow_up(inputs, answer.token_ids, "What colour is the moving square?")
    assert person.cached_tokens == colour.cached_tokens == engine.history_length

    alone = backend.follow_up(colour, FOLLOW)  # the colour question right after the answer
    other = backend.follow_up(person, FOLLOW)  # another question about the same answer
    assert engine.history_length == person.total_tokens + len(other.token_ids) - 1
    again = backend.follow_up(colour, FOLLOW)  # the history is rolled back to the answer first
    assert again.token_ids == alone.token_ids and again.text == alone.text
    assert engine.history_length == colour.total_tokens + len(again.token_ids) - 1

    # And each answer is what transformers gives for the whole conversation (prefilled at once).
    assert_greedy_parity(hf_bf16, colour, again.token_ids, FOLLOW.max_new_tokens, ties_allowed=True)
    assert_greedy_parity(hf_bf16, person, other.token_ids, FOLLOW.max_new_tokens, ties_allowed=True)
