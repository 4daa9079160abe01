"""A generated video -> VideoSource -> segmenter -> InputBuilder -> HfBackend (tiny model) -> text.

Through the public API only, on the CPU, twice: greedy decoding gives the same tokens.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from streamproc.backends import GenerationParams  # noqa: E402
from streamproc.config import config_from_data  # noqa: E402
from streamproc.pipeline.describer import describe_segment  # noqa: E402
from streamproc.errors import ConfigError, InputTooLarge, ModelError  # noqa: E402
from streamproc.ingest.segmenter import segment_stream, segmenter_for  # noqa: E402
from streamproc.ingest.sources import VideoSource  # noqa: E402
from streamproc.qwen.budget import check_plan, check_sampling  # noqa: E402

pytestmark = pytest.mark.hf

SEQ_LENGTH = 256


def pipeline_config(video, max_pixels=112 * 224):
    return config_from_data(
        {
            "sources": [{"name": "cam", "path": str(video)}],
            "sampling": {"fps": 1.0, "max_pixels": max_pixels},
            "segmenting": {"seq_length": SEQ_LENGTH, "prompt_reserve": 48, "answer_reserve": 16, "max_duration_s": 6},
        }
    )


def captions(backend, config):
    builder = backend.inputs
    check_sampling(builder.vision, config.sampling)
    source = VideoSource(config.sources[0], config.sampling)
    segmenter = segmenter_for(source.name, config.sampling, config.segmenting, SEQ_LENGTH)
    out = []
    for segment in segment_stream(source.items(), segmenter):
        height, width = segment.frame_size
        check_plan(builder.vision, segmenter.plan, height, width)
        params = GenerationParams(max_new_tokens=8)
        result = describe_segment(backend, segment, config.prompt.user, system=config.prompt.system, params=params)
        out.append((segment, result))
    return out


def test_video_to_text_is_deterministic(make_video, tiny_hf_backend):
    video = make_video(duration_s=14, fps=15, width=320, height=240, gop=15)
    config = pipeline_config(video)
    first = captions(tiny_hf_backend, config)
    second = captions(tiny_hf_backend, config)
    assert [len(segment.frames) for segment, _ in first] == [6, 6, 2]
    for (segment, a), (_, b) in zip(first, second):
        assert a.token_ids == b.token_ids and a.text == b.text
        # A random model may say <|im_end|> at any point: then it stops early (finish "stop").
        assert 1 <= a.generated_tokens <= 8
        assert (a.finish_reason == "stop") == (a.token_ids[-1] in tiny_hf_backend.inputs.stop_ids)
        height, width = segment.frame_size
        assert a.visual_tokens == len(segment.frames) // 2 * (height // 28) * (width // 28)
        assert a.prompt_tokens <= SEQ_LENGTH - 16
        assert a.timings.preprocess_s > 0 and a.timings.total_s > a.timings.preprocess_s
        assert a.model == tiny_hf_backend.model_id
    assert len({result.token_ids for _, result in first}) > 1  # different segments, different text
    assert any(result.text.strip() for _, result in first)


def test_sampling_larger_than_the_model_is_refused(make_video, tiny_hf_backend):
    config = pipeline_config(make_video(duration_s=2, fps=15, width=320, height=240), max_pixels=672 * 896)
    with pytest.raises(ConfigError, match="max_pixels"):
        check_sampling(tiny_hf_backend.inputs.vision, config.sampling)


def test_frames_not_at_model_size_are_refused(tiny_hf_backend):
    from streamproc.frames import Frame, Segment

    frames = tuple(Frame("cam", i, float(i), float(i), 0.0, np.zeros((60, 84, 3), np.uint8)) for i in range(2))
    segment = Segment("cam", 0, frames, 0.0, 2.0, 1.0)
    with pytest.raises(ModelError, match="multiples of 28"):
        describe_segment(tiny_hf_backend, segment, "Describe.")


def test_prompt_that_leaves_no_room_for_the_answer(tiny_hf_backend):
    long_prompt = "Describe every person, car and animal in the scene in detail. " * 20
    with pytest.raises(InputTooLarge, match="no room|nothing is left"):
        tiny_hf_backend.inputs.visual_budget(SEQ_LENGTH, long_prompt, answer_reserve=16)
