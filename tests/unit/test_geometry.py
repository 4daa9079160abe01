"""Model geometry read from files before any weight loads, and the one rule that fits a config to it.

Ground truth for the bmodels is the converter's own command line, recorded in the fixtures'
MANIFEST.json (-s SEQ, --max_pixels H,W, --chunk_length / --max_input_length).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from streamproc.backends.bmodel_nets import read_bmodel_nets
from streamproc.backends.geometry import (
    DEFAULT_MAX_PIXELS,
    ModelGeometry,
    bmodel_geometry,
    checkpoint_geometry,
    fit_config,
)
from streamproc.config import config_from_data
from streamproc.errors import ConfigError, ModelError
from streamproc.qwen import Family, tiny_specs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bmodels"
MANIFEST = json.loads((FIXTURES / "MANIFEST.json").read_text())["fixtures"]
QWEN_FIXTURES = sorted(name for name in MANIFEST if name != "not_qwen_add")


def converter_flags(name: str) -> dict:
    """The geometry asked for, from llm_convert.py's flags or `streamproc convert`'s."""
    flags = MANIFEST[name]["build"]["flags"]
    seq = int(re.search(r"(?:-s|--seq-length) (\d+)", flags).group(1))
    height, width = map(int, re.search(r"--max[_-]pixels (\d+)[,x](\d+)", flags).group(1, 2))
    chunk = re.search(r"--(?:chunk_length|max_input_length|input-length) (\d+)", flags)
    history = any(flag in flags for flag in ("use_history_kv", "use_block_with_kv", "--history"))
    return {"seq": seq, "max_pixels": height * width, "max_input": int(chunk.group(1)) if chunk else seq,
            "history": history}


@pytest.fixture(scope="module")
def tokenizers(tiny_model_dir, tiny_qwen3_dir):
    """The tokenizer folder of each family's fixtures."""
    return {"qwen2.5-vl": tiny_model_dir, "qwen3-vl": tiny_qwen3_dir}


@pytest.mark.parametrize("name", QWEN_FIXTURES)
def test_bmodel_geometry_is_what_the_converter_was_asked_for(name, tokenizers):
    expected = converter_flags(name)
    family = MANIFEST[name]["family"]
    geometry = bmodel_geometry(FIXTURES / f"{name}.bmodel", tokenizers[family])
    assert geometry.family.value == family
    assert geometry.seq_length == expected["seq"]
    assert geometry.image_max_pixels == geometry.video_max_pixels == expected["max_pixels"]
    assert geometry.max_input == expected["max_input"]
    assert geometry.keeps_history is expected["history"]
    assert geometry.chip == MANIFEST[name]["chip"]
    assert bmodel_geometry(FIXTURES / f"{name}.bmodel").family.value == family  # from the nets alone


def test_a_tokenizer_folder_of_the_other_family_is_refused(tiny_model_dir):
    with pytest.raises(ModelError, match="holds a Qwen2.5-VL checkpoint, but the model is Qwen3-VL"):
        bmodel_geometry(FIXTURES / "qwen3_static_bf16_s256_i128.bmodel", tiny_model_dir)


def test_bmodel_geometry_ignores_the_tokenizer_folders_pixel_limit(tiny_model_dir, tmp_path):
    """A tokenizer folder's preprocessor_config describes the checkpoint before conversion; the
    bmodel's ViT decides what an image may be."""
    folder = tmp_path / "tokenizer"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "preprocessor_config.json").read_text())
    config["max_pixels"] = 56 * 56
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    geometry = bmodel_geometry(FIXTURES / "dynamic_bf16_s256.bmodel", folder)
    assert geometry.image_max_pixels == 112 * 224
    assert checkpoint_geometry(folder).image_max_pixels == 56 * 56


def test_reading_a_bmodels_nets_needs_no_runtime_and_reads_only_the_description():
    nets = read_bmodel_nets(FIXTURES / "history_bf16_s256_c64.bmodel")
    assert {"embedding", "embedding_cache", "vit", "lm_head", "block_kv_0", "block_cache_1"} <= set(nets.nets)
    assert nets.nets["vit"].input_shape(0) == (128, 1176)
    assert len(nets.nets["block_cache_0"].stages) == 3  # one per KV length


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "too small"),
        (b"\x00" * 64, "bad magic"),
        (bytes.fromhex("EEAA55FF") + (64).to_bytes(4, "little") + (4096).to_bytes(4, "little") + b"\x00" * 52
         + b"\xff" * 4096, "damaged"),
    ],
)
def test_files_that_are_not_bmodels_fail_in_one_line(tmp_path, content, message):
    path = tmp_path / "x.bmodel"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        read_bmodel_nets(path)


def test_a_bmodel_that_is_not_qwen_is_named_as_such(tiny_model_dir):
    with pytest.raises(ModelError, match="not a Qwen2.5-VL or Qwen3-VL bmodel"):
        bmodel_geometry(FIXTURES / "not_qwen_add.bmodel", tiny_model_dir)
    with pytest.raises(ModelError, match="does not exist"):
        bmodel_geometry(FIXTURES / "missing.bmodel", tiny_model_dir)


def test_checkpoint_geometry_comes_from_its_config_files(tiny_model_dir):
    geometry = checkpoint_geometry(tiny_model_dir)
    assert geometry.image_max_pixels == 112 * 224  # the tiny model's preprocessor_config
    assert geometry.video_max_pixels == 112 * 224
    assert geometry.max_context == tiny_specs.Q25_TEXT["max_position_embeddings"]
    assert geometry.seq_length is None and geometry.context == 2048


# -- the fit rule ---------------------------------------------------------------------------------

BMODEL_2K = ModelGeometry(  # the seed's published 3B bmodel: 2K context, --max_pixels 672,896
    model="qwen2.5-vl-3b.bmodel", seq_length=2048, max_context=2048, max_input=2048,
    image_min_pixels=3136, image_max_pixels=672 * 896, video_min_pixels=3136, video_max_pixels=672 * 896,
    keeps_history=False,
)
TINY_BMODEL = ModelGeometry(
    model="tiny.bmodel", seq_length=256, max_context=256, max_input=256,
    image_min_pixels=3136, image_max_pixels=112 * 224, video_min_pixels=784, video_max_pixels=112 * 224,
    keeps_history=False,
)


def config(**sections):
    return config_from_data({"backend": {"type": "hf", "model": "x"}, **sections})


def test_unset_values_come_from_the_model():
    fitted = fit_config(config(), BMODEL_2K)
    assert fitted.sampling.max_pixels == DEFAULT_MAX_PIXELS  # 672x896: quarter-size video frames
    assert fitted.sampling.video_pixels == 336 * 448
    assert fitted.segmenting.seq_length == 2048
    tiny_fit = fit_config(config(), TINY_BMODEL)
    assert tiny_fit.sampling.max_pixels == 112 * 224 and tiny_fit.segmenting.seq_length == 256
    assert fit_config(tiny_fit, TINY_BMODEL) == tiny_fit  # fitting twice changes nothing


def test_values_the_user_set_are_kept_when_they_fit():
    fitted = fit_config(config(sampling={"max_pixels": "336x448"}, segmenting={"seq_length": 1024}), BMODEL_2K)
    assert fitted.sampling.max_pixels == 336 * 448 and fitted.segmenting.seq_length == 1024


@pytest.mark.parametrize(
    "sections, key, flag, allowed",
    [
        ({"sampling": {"max_pixels": "224x448"}}, "sampling.max_pixels", "--max-pixels", "allowed: 3137..25088 pixels (e.g. 112x224)"),
        ({"sampling": {"max_pixels": "28x28"}}, "sampling.max_pixels", "--max-pixels", "allowed: 3137..25088"),
        ({"sampling": {"min_pixels": 7000}}, "sampling.min_pixels", "config only", "allowed: 784..6272"),
        ({"segmenting": {"seq_length": 4096}}, "segmenting.seq_length", "--seq-length", "allowed: 64..256"),
        ({"generation": {"max_new_tokens": 300}}, "generation.max_new_tokens", "--max-new-tokens", "allowed: 1..128"),
    ],
)
def test_values_that_do_not_fit_are_refused_naming_key_flag_and_range(sections, key, flag, allowed):
    with pytest.raises(ConfigError) as error:
        fit_config(config(**sections), TINY_BMODEL)
    message = str(error.value)
    assert message.startswith(f"{key} ({flag})"), message
    assert allowed in message, message
    assert "\n" not in message


# -- Qwen3-VL: the demo's bmodel (seq 2048, max input 1024, max_pixels 768x768, no history) ------

QWEN3_4B_BMODEL = ModelGeometry(
    model="qwen3-vl-4b.bmodel", seq_length=2048, max_context=2048, max_input=1024,
    image_min_pixels=4096, image_max_pixels=768 * 768, video_min_pixels=2048, video_max_pixels=768 * 768,
    keeps_history=False, factor=32, patch_size=16, layout="static", family=Family.QWEN3_VL,
    pair_text_tokens=12,  # "<10000.5 seconds>" and the vision markers, with Qwen's tokenizer (an upper bound)
    chunked_prefill=False,
)


def test_qwen3_segments_fit_the_bmodels_input_12_s_at_quarter_size():
    from streamproc.ingest.sampling import model_frame_size
    from streamproc.ingest.segmenter import segmenter_for

    fitted = fit_config(config(), QWEN3_4B_BMODEL)
    sampling, segmenting = fitted.sampling, fitted.segmenting
    assert sampling.max_pixels == 768 * 768 and sampling.token_pixels == 32
    assert segmenting.seq_length == 1024 + segmenting.answer_reserve  # the input, then the answer
    assert segmenting.pair_text_tokens == 12
    frame = model_frame_size(768, 768, sampling)
    assert frame == (384, 384)  # a quarter of the area, 12x12 tokens of 32 px
    plan = segmenter_for("camera", sampling, segmenting, segmenting.seq_length)._planner(*frame)
    assert plan.duration_s == 12 and plan.tokens_per_pair == 144 + 12
    with pytest.raises(ConfigError, match=r"segmenting.seq_length .*prefill of 1024 tokens"):
        fit_config(config(segmenting={"seq_length": 2048}), QWEN3_4B_BMODEL)
