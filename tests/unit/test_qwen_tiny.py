"""`make-tiny-model`: files, shapes the TPU converter needs, token ids, determinism, loading (both families)."""
from __future__ import annotations

import json
import struct

import pytest

from streamproc.cli import main
from streamproc.errors import UsageError
from streamproc.qwen import InputBuilder, QwenTokenizer
from streamproc.qwen import get_family
from streamproc.qwen.tiny import MODEL_FILES, SPECIAL_TOKENS, make_tiny_model


def weight_shapes(family: str = "qwen2.5-vl"):
    return get_family(family).tiny(SPECIAL_TOKENS).weight_shapes


def safetensors_header(path) -> dict:
    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(size))


def test_files_and_determinism(tiny_model_dir, tmp_path):
    again = make_tiny_model(tmp_path / "again")
    for name in MODEL_FILES:
        assert (tiny_model_dir / name).read_bytes() == (again / name).read_bytes(), name
    total = sum((tiny_model_dir / name).stat().st_size for name in MODEL_FILES)
    assert total < 10_000_000
    other = make_tiny_model(tmp_path / "seed1", seed=1)
    assert (other / "model.safetensors").read_bytes() != (again / "model.safetensors").read_bytes()


def test_config_has_what_the_tpu_converter_reads(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl"
    assert config["hidden_size"] // config["num_attention_heads"] == 128
    assert config["rope_scaling"]["mrope_section"] == [16, 24, 24]
    vision = config["vision_config"]
    assert vision["hidden_size"] // vision["num_heads"] == 80
    assert vision["in_chans"] == 3 and vision["tokens_per_second"] == 2
    assert vision["fullatt_block_indexes"] == [1, 3] and vision["window_size"] == 112
    assert config["image_token_id"] == SPECIAL_TOKENS["<|image_pad|>"] == 2042
    assert config["video_token_id"] == SPECIAL_TOKENS["<|video_pad|>"] == 2043
    assert config["vision_start_token_id"] == 2039 and config["vision_end_token_id"] == 2040
    generation = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [2032, 2030]


def test_weights_use_the_original_key_layout(tiny_model_dir):
    header = safetensors_header(tiny_model_dir / "model.safetensors")
    assert header.pop("__metadata__") == {"format": "pt"}
    expected = {name: list(shape) for name, shape, _ in weight_shapes()}
    assert {name: entry["shape"] for name, entry in header.items()} == expected
    assert {entry["dtype"] for entry in header.values()} == {"BF16"}
    prefixes = ("visual.", "model.layers.", "model.embed_tokens.", "model.norm.", "lm_head.")
    assert all(name.startswith(prefixes) for name in header)


def test_tokenizer_special_ids_and_round_trip(tiny_model_dir, tiny_builder):
    tokenizer = QwenTokenizer.from_dir(tiny_model_dir)
    for token, expected in SPECIAL_TOKENS.items():
        assert tokenizer.token_id(token) == expected
    ids = tokenizer.encode("<|im_start|>user\nA red car drives past 12 people.<|im_end|>")
    assert ids[0] == 2031 and ids[-1] == 2032
    assert tokenizer.decode(ids) == "user\nA red car drives past 12 people."
    assert tiny_builder.stop_ids == (2032, 2030)
    assert InputBuilder.from_pretrained(tiny_model_dir).vision.video_max_pixels == 112 * 224


def test_refuses_to_overwrite(tmp_path):
    make_tiny_model(tmp_path)
    with pytest.raises(UsageError, match="--force"):
        make_tiny_model(tmp_path)
    make_tiny_model(tmp_path, overwrite=True)


def test_cli(tmp_path, capsys):
    assert main(["make-tiny-model", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert main(["make-tiny-model", str(tmp_path / "m")]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert main(["make-tiny-model", str(tmp_path / "m"), "--force", "--seed", "2"]) == 0


def test_qwen3_config_and_weights(tiny_qwen3_dir):
    config = json.loads((tiny_qwen3_dir / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl" and config["architectures"] == ["Qwen3VLForConditionalGeneration"]
    text, vision = config["text_config"], config["vision_config"]
    assert text["head_dim"] == 128 and text["rope_scaling"]["mrope_section"] == [24, 20, 20]
    assert vision["hidden_size"] // vision["num_heads"] == 64 and vision["deepstack_visual_indexes"] == [1, 2]
    assert vision["patch_size"] == 16 and vision["num_position_embeddings"] == 256
    header = safetensors_header(tiny_qwen3_dir / "model.safetensors")
    header.pop("__metadata__")
    assert {name: entry["shape"] for name, entry in header.items()} == {
        name: list(shape) for name, shape, _ in weight_shapes("qwen3-vl")
    }
    assert all(name.startswith(("model.visual.", "model.language_model.", "lm_head.")) for name in header)
    builder = InputBuilder.from_pretrained(tiny_qwen3_dir)
    assert builder.family.label == "Qwen3-VL" and builder.vision.factor == 32 and builder.spec.default_system is None
    assert builder.vision.position_grid == 16 and builder.vision.deepstack_indexes == (1, 2)


def test_cli_family(tmp_path, capsys):
    assert main(["make-tiny-model", str(tmp_path / "q3"), "--family", "qwen3-vl"]) == 0
    assert "Qwen3-VL" in capsys.readouterr().out
    assert json.loads((tmp_path / "q3" / "config.json").read_text())["model_type"] == "qwen3_vl"
    assert main(["make-tiny-model", str(tmp_path / "x"), "--family", "qwen4-vl"]) == 2


@pytest.mark.hf
def test_transformers_loads_qwen3_offline(tiny_qwen3_dir):
    pytest.importorskip("torch")
    from transformers import Qwen3VLForConditionalGeneration

    model, info = Qwen3VLForConditionalGeneration.from_pretrained(str(tiny_qwen3_dir), output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and info["mismatched_keys"] == []
    assert model.config.vision_config.deepstack_visual_indexes == [1, 2]


@pytest.mark.hf
def test_transformers_loads_it_offline(tiny_model_dir, tiny_processor):
    pytest.importorskip("torch")
    from transformers import Qwen2_5_VLForConditionalGeneration

    model, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(tiny_model_dir), output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and info["mismatched_keys"] == []
    assert model.config.vision_config.tokens_per_second == 2
    assert tiny_processor.tokenizer.convert_tokens_to_ids("<|video_pad|>") == 2043
    assert tiny_processor.video_processor.size["longest_edge"] == 112 * 224
    assert tiny_processor.image_processor.max_pixels == 112 * 224
    text = tiny_processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Hi"}]}], add_generation_prompt=True
    )
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
