"""The geometry read from a bmodel's header (before loading) is what the loaded engine reports,
and images are sized by the bmodel's own max_pixels, not the tokenizer folder's preprocessor.

The tokenizer folder used here says max_pixels 56x56 (4 visual tokens an image): a backend that
took the folder's limit would give 4 tokens for the large image; the bmodel's ViT allows more.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamproc.backends.geometry import bmodel_geometry
from streamproc.ingest.sampling import smart_resize

from .conftest import FIXTURES, bmodel_path
from .support import child_report, run_child

pytestmark = [pytest.mark.slow, pytest.mark.cpu_bound]

MANIFEST = json.loads((FIXTURES / "MANIFEST.json").read_text())["fixtures"]
BM1684X = sorted(n for n, f in MANIFEST.items() if f["chip"] == "BM1684X" and n != "not_qwen_add")
BM1688 = sorted(n for n, f in MANIFEST.items() if f["chip"] == "BM1688")
LARGE, SMALL = (448, 448), (112, 112)  # larger than every fixture's ViT takes; smaller than all


def limited(source: Path, folder: Path, factor: int) -> Path:
    """A copy of a tokenizer folder whose preprocessor_config allows 2x2 tokens an image."""
    shutil.copytree(source, folder)
    config = json.loads((folder / "preprocessor_config.json").read_text())
    config["max_pixels"] = 4 * factor * factor
    config["min_pixels"] = factor * factor
    config["size"] = {"shortest_edge": factor * factor, "longest_edge": 4 * factor * factor}
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def small_limit_tokenizers(tiny_model_dir, tiny_qwen3_dir, tmp_path_factory) -> dict:
    """Per family, a tokenizer folder that says 4 visual tokens an image."""
    base = tmp_path_factory.mktemp("tokenizer-4-tokens")
    return {"qwen2.5-vl": limited(tiny_model_dir, base / "qwen2.5", 28), "qwen3-vl": limited(tiny_qwen3_dir, base / "qwen3", 32)}


@pytest.fixture(scope="module")
def small_limit_tokenizer(small_limit_tokenizers) -> Path:
    return small_limit_tokenizers["qwen2.5-vl"]


def expected_tokens(size: tuple[int, int], max_pixels: int, factor: int = 28) -> int:
    """Visual tokens of an image under the bmodel's max_pixels (Qwen's resize rule, factor-pixel tokens)."""
    height, width = smart_resize(*size, factor, factor * factor, max_pixels)
    return (height // factor) * (width // factor)


CHECK = """
from pathlib import Path
import numpy as np
from streamproc.backends.geometry import bmodel_geometry
from streamproc.backends.tpu import TpuBackend
from streamproc.config.model import TpuBackendConfig
config = TpuBackendConfig(bmodel=BMODEL, tokenizer=TOKENIZER, runtime_dir=RUNTIME)
geometry = bmodel_geometry(config.bmodel, config.tokenizer)
backend = TpuBackend(config)
info = backend.info
def get(key):  # ModelInfo attributes (or the older dict)
    return getattr(info, key) if hasattr(info, key) else info[key]
tokens = [backend.inputs.build("hi", images=[np.zeros((h, w, 3), np.uint8)]).visual_tokens for h, w in SIZES]
backend.close()
emit({"geometry": [geometry.seq_length, geometry.max_input, geometry.image_max_pixels, geometry.keeps_history,
                   geometry.layout],
      "engine": [get("seq_length"), get("max_input"), get("max_patches") * geometry.patch_size ** 2, bool(get("supports_history")),
                 get("layout")],
      "tokens": tokens})
"""


def check_in_child(name: str, tokenizer: Path, runtime: str) -> dict:
    code = (f"BMODEL, TOKENIZER, RUNTIME = {str(bmodel_path(name))!r}, {str(tokenizer)!r}, {runtime!r}\n"
            f"SIZES = {[LARGE, SMALL]!r}\n" + CHECK)
    proc, results = run_child(code, timeout=300)
    assert proc.returncode == 0 and results, child_report(proc)
    return results[0]


@pytest.mark.parametrize("name", BM1684X + BM1688)
def test_header_geometry_is_the_engines_and_images_use_the_bmodels_max_pixels(
    name, small_limit_tokenizers, runtime_dir, request
):
    runtime = request.getfixturevalue("runtime_dir_bm1688") if name in BM1688 else runtime_dir
    tokenizer = small_limit_tokenizers[MANIFEST[name]["family"]]
    result = check_in_child(name, tokenizer, runtime)
    assert result["geometry"] == result["engine"]
    geometry = bmodel_geometry(bmodel_path(name), tokenizer)
    large, small = result["tokens"]
    assert large == expected_tokens(LARGE, geometry.image_max_pixels, geometry.factor) > 4  # more than the folder's
    assert small == expected_tokens(SMALL, geometry.image_max_pixels, geometry.factor) == 16  # a smaller image keeps its size


def test_chat_image_on_the_simulator_counts_the_bmodels_visual_tokens(small_limit_tokenizer, runtime_dir, tmp_path):
    """One real chat run (the simulator is slow: one new token, one small fixture)."""
    from PIL import Image

    picture = tmp_path / "large.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*LARGE, 3), dtype=np.uint8)).save(picture)
    name = "sample_dynamic_bf16_s128"  # a 64-patch ViT: the smallest images, the quickest run
    env = dict(os.environ, STREAMPROC_BMRT_DIR=runtime_dir, PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, "-m", "streamproc", "chat", "-m", str(bmodel_path(name)), "-c", str(small_limit_tokenizer),
         "--image", str(picture), "-p", "What is this?", "--max-new-tokens", "1"],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    counted = int(re.search(r"(\d+) visual tokens", proc.stderr).group(1))
    limit = bmodel_geometry(bmodel_path(name), small_limit_tokenizer).image_max_pixels
    assert counted == expected_tokens(LARGE, limit) == 16
