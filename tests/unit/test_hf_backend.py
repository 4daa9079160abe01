"""The transformers backend on the tiny model: same tokens as generate(), sampling, stops, errors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from streamproc.backends import GenerationParams, backend_class, create_backend  # noqa: E402
from streamproc.backends.base import Backend  # noqa: E402
from streamproc.config.model import HfBackendConfig  # noqa: E402
from streamproc.errors import ModelError  # noqa: E402
from streamproc.qwen import InputBuilder  # noqa: E402

pytestmark = [pytest.mark.hf, pytest.mark.cpu_bound]


def generate_reference(backend, processor, content, max_new_tokens, **media):
    messages = [{"role": "user", "content": content}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    ref = processor(text=[text], return_tensors="pt", **media)
    with torch.no_grad():
        out = backend.model.generate(**ref, max_new_tokens=max_new_tokens, do_sample=False)
    return tuple(out[0, ref["input_ids"].shape[1] :].tolist())


def test_registry_and_protocol(tiny_hf_backend):
    from streamproc.backends.hf import HfBackend

    assert backend_class("hf") is HfBackend
    assert isinstance(tiny_hf_backend, Backend)
    assert tiny_hf_backend.name == "hf" and tiny_hf_backend.seq_length is None
    assert isinstance(tiny_hf_backend.inputs, InputBuilder)


@pytest.mark.parametrize("fps,frames", [(1.0, 4), (2.0, 5)])
def test_greedy_video_matches_generate(tiny_hf_backend, tiny_processor, fps, frames):
    video = np.random.default_rng(int(fps * 10) + frames).integers(0, 256, (frames, 84, 112, 3), dtype=np.uint8)
    inputs = tiny_hf_backend.inputs.build("Describe it.", video=video, fps=fps)
    result = tiny_hf_backend.describe(inputs, GenerationParams(max_new_tokens=16))
    content = [{"type": "video"}, {"type": "text", "text": "Describe it."}]
    expected = generate_reference(tiny_hf_backend, tiny_processor, content, 16, videos=[video], fps=fps)
    assert result.token_ids == expected
    assert result.generated_tokens == len(expected)
    assert result.prompt_tokens == inputs.total_tokens and result.visual_tokens == inputs.visual_tokens
    assert result.text == tiny_hf_backend.inputs.decode(expected).strip()  # both backends strip the text
    assert len(set(result.token_ids)) > 4, "tiny model output collapsed to a repeated token"
    t = result.timings
    assert t.vision_s > 0 and t.prefill_s > 0 and t.total_s >= t.vision_s + t.prefill_s


def test_greedy_images_match_generate(tiny_hf_backend, tiny_processor):
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (112, 84, 3), dtype=np.uint8), rng.integers(0, 256, (56, 168, 3), dtype=np.uint8)]
    inputs = tiny_hf_backend.inputs.build("Compare them.", images=images)
    result = tiny_hf_backend.describe(inputs, GenerationParams(max_new_tokens=12))
    content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Compare them."}]
    assert result.token_ids == generate_reference(tiny_hf_backend, tiny_processor, content, 12, images=images)


def test_output_depends_on_the_input(tiny_hf_backend):
    rng = np.random.default_rng(8)
    texts = set()
    for _ in range(3):
        video = rng.integers(0, 256, (2, 56, 84, 3), dtype=np.uint8)
        inputs = tiny_hf_backend.inputs.build("Describe it.", video=video)
        texts.add(tiny_hf_backend.describe(inputs, GenerationParams(max_new_tokens=12)).token_ids)
    assert len(texts) == 3


def test_sampling_is_seeded(tiny_hf_backend):
    video = np.random.default_rng(9).integers(0, 256, (2, 56, 56, 3), dtype=np.uint8)
    inputs = tiny_hf_backend.inputs.build("Describe it.", video=video)
    sampling = dict(do_sample=True, temperature=1.2, top_p=0.95, top_k=40, repetition_penalty=1.1)
    params = GenerationParams(max_new_tokens=12, seed=3, **sampling)
    first = tiny_hf_backend.describe(inputs, params)
    assert tiny_hf_backend.describe(inputs, params).token_ids == first.token_ids
    greedy = tiny_hf_backend.describe(inputs, GenerationParams(max_new_tokens=12)).token_ids
    others = {
        tiny_hf_backend.describe(inputs, GenerationParams(max_new_tokens=12, seed=s, **sampling)).token_ids
        for s in range(4)
    }
    assert len(others | {greedy}) > 1


def test_repetition_penalty_matches_generate(tiny_hf_backend, tiny_processor):
    video = np.random.default_rng(11).integers(0, 256, (2, 56, 84, 3), dtype=np.uint8)
    inputs = tiny_hf_backend.inputs.build("Describe it.", video=video)
    result = tiny_hf_backend.describe(inputs, GenerationParams(max_new_tokens=16, repetition_penalty=1.3))
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe it."}]}]
    text = tiny_processor.apply_chat_template(messages, add_generation_prompt=True)
    ref = tiny_processor(text=[text], videos=[video], fps=1.0, return_tensors="pt")
    with torch.no_grad():
        out = tiny_hf_backend.model.generate(**ref, max_new_tokens=16, do_sample=False, repetition_penalty=1.3)
    assert result.token_ids == tuple(out[0, ref["input_ids"].shape[1] :].tolist())


def test_stops_on_a_stop_token(tiny_hf_backend, monkeypatch):
    video = np.random.default_rng(12).integers(0, 256, (2, 56, 84, 3), dtype=np.uint8)
    inputs = tiny_hf_backend.inputs.build("Describe it.", video=video)
    free = tiny_hf_backend.describe(inputs, GenerationParams(max_new_tokens=10))
    assert free.finish_reason == "length" and free.generated_tokens == 10
    stop = free.token_ids[4]
    monkeypatch.setattr(InputBuilder, "stop_ids", property(lambda self: (stop,)))
    stopped = tiny_hf_backend.describe(inputs, GenerationParams(max_new_tokens=10))
    assert stopped.finish_reason == "stop"
    assert stopped.token_ids == free.token_ids[: free.token_ids.index(stop) + 1]


def test_follow_up_turn_runs(tiny_hf_backend):
    builder = tiny_hf_backend.inputs
    video = np.random.default_rng(13).integers(0, 256, (2, 56, 84, 3), dtype=np.uint8)
    first_inputs = builder.build("Describe it.", video=video)
    first = tiny_hf_backend.describe(first_inputs, GenerationParams(max_new_tokens=6))
    second_inputs = builder.follow_up(first_inputs, first.token_ids, "Anything else?")
    second = tiny_hf_backend.describe(second_inputs, GenerationParams(max_new_tokens=6))
    assert second.prompt_tokens > first.prompt_tokens + len(first.token_ids)
    assert second.generated_tokens == 6


def test_missing_model_folder():
    with pytest.raises(ModelError, match="does not exist"):
        create_backend(HfBackendConfig(model="/nonexistent/qwen"))


def test_model_folder_missing_files(tmp_path, tiny_model_dir):
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelError, match=r"missing files: config.json, model.safetensors"):
        create_backend(HfBackendConfig(model=str(tmp_path)))


def test_not_a_qwen_config(tmp_path, tiny_model_dir):
    shutil.copytree(tiny_model_dir, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["model_type"] = "llama"
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="'llama' model"):
        create_backend(HfBackendConfig(model=str(tmp_path / "m")))


def test_hub_id_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="Qwen/Qwen2.5-VL-3B-Instruct.*hub"):
        create_backend(HfBackendConfig(model="Qwen/Qwen2.5-VL-3B-Instruct"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu(tiny_model_dir):
    with pytest.raises(ModelError, match="no CUDA"):
        create_backend(HfBackendConfig(model=str(tiny_model_dir), device="cuda"))


def test_describe_images_convenience(tiny_hf_backend):
    from streamproc.pipeline.describer import describe_images

    image = np.random.default_rng(14).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    result = describe_images(tiny_hf_backend, [image], "What is this?", params=GenerationParams(max_new_tokens=4))
    assert result.visual_tokens > 0 and 1 <= result.generated_tokens <= 4
    assert result.timings.preprocess_s > 0
