"""What a model takes, known before its weights load: family, context, input and pixel limits, history.

Every backend class states its geometry from files alone (`geometry(config)`), in well under a second:
- a transformers checkpoint from config.json and its processor configs (preprocessor_config.json,
  video_preprocessor_config.json);
- a bmodel from its nets (bmodel_nets reads the file's description, not its weights): the
  decode block's KV length is the sequence length, the embedding's input the longest single
  prefill, the ViT's patch count the largest image or video frame, history nets whether it keeps
  the KV cache between turns, the vit's inputs the model family.

`fit_config` is the one rule that turns a config into settings that fit the model: values the
user left unset come from the geometry, values the user set that do not fit are refused with a
message naming the config key, the command-line flag and the allowed range. The service, caption,
chat, bench and doctor all call it before any weight is loaded.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from ..errors import ConfigError, ModelError
from ..qwen.config import QwenSpec
from ..qwen.families import family_of_nets
from ..qwen.family import ModelFamily
from ..qwen.tokenizer import QwenTokenizer
from ..qwen.vision import VisionSpec
from .base import DEFAULT_SEQ_LENGTH, ModelGeometry, backend_class, side
from .bmodel_nets import BmodelNets, read_bmodel_nets

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_SEQ_LENGTH", "ModelGeometry", "bmodel_geometry", "checkpoint_geometry", "fit_config", "fit_to_model"]

DEFAULT_MAX_PIXELS = 672 * 896  # Qwen2.5-VL bmodels' usual max_pixels; video frames use a quarter

# The config key -> the flag of the commands that have one (for error messages).
FLAGS = {
    "sampling.max_pixels": "--max-pixels",
    "sampling.min_pixels": None,
    "sampling.fps": "--fps",
    "segmenting.seq_length": "--seq-length",
    "generation.max_new_tokens": "--max-new-tokens",
}


def _pair_text(family: ModelFamily, folder: Optional[Path]) -> int:
    """The family's per-frame-pair text tokens, with the folder's tokenizer (loaded only when
    the family has such text)."""
    if folder is None:
        return family.pair_text_tokens(lambda text: [0] * len(text))  # no tokenizer: one per character
    return family.pair_text_tokens(lambda text: QwenTokenizer.from_dir(folder).encode(text))


# -- from the files ------------------------------------------------------------------------------


def checkpoint_geometry(path: str | Path) -> ModelGeometry:
    """A checkpoint (or tokenizer) folder: its family and pixel limits from its config files."""
    folder = Path(path).expanduser()
    spec = QwenSpec.from_dir(folder)
    v = spec.vision
    return ModelGeometry(
        model=str(path),
        seq_length=None,
        max_context=spec.max_position_embeddings,
        max_input=None,
        image_min_pixels=v.image_min_pixels,
        image_max_pixels=v.image_max_pixels,
        video_min_pixels=v.video_min_pixels,
        video_max_pixels=v.video_max_pixels,
        keeps_history=True,  # transformers: the whole conversation runs again; nothing is lost
        factor=v.factor,
        patch_size=v.patch_size,
        family=spec.family.family,
        pair_text_tokens=_pair_text(spec.family, folder),
    )


def bmodel_family(found: BmodelNets) -> ModelFamily:
    """The family of a bmodel's nets (ModelError for a bmodel that is not a Qwen VL model)."""
    nets = found.nets
    needed = ("embedding", "vit", "block_0", "block_cache_0")
    missing = [n for n in needed if n not in nets]
    if missing:
        raise ModelError(
            f"{found.path.name} is not a Qwen2.5-VL or Qwen3-VL bmodel: it lacks the nets {', '.join(missing)} "
            f"(it has {', '.join(sorted(nets)[:8])})"
        )
    vit = nets["vit"]
    inputs = [vit.input_shape(i) for i in range(vit.input_count)]
    return family_of_nets(inputs, len(vit.stages[0].outputs), found.path.name)


def bmodel_geometry(bmodel: str | Path, tokenizer: Optional[str | Path] = None) -> ModelGeometry:
    """A bmodel, from its nets: the ViT's patches bound images and frames (not the tokenizer
    folder's preprocessor_config, which describes the original checkpoint)."""
    found = read_bmodel_nets(bmodel)
    nets = found.nets
    family = bmodel_family(found)
    folder = Path(tokenizer).expanduser() if tokenizer is not None else None
    vision = _vision(family, folder)
    cache = nets["block_cache_0"]
    seq_length = max(int(cache.input_shape(3, s)[1]) for s in range(len(cache.stages)))
    max_patches = int(nets["vit"].input_shape(0)[0])
    limit = max_patches * vision.patch_size**2
    block = nets["block_0"]
    if "block_kv_0" in nets:
        layout = "history"
    elif block.input_count == 5:
        layout = "history-old"
    elif block.input_count == 3:
        layout = "static"
    else:
        layout = "dynamic"
    return ModelGeometry(
        model=found.path.name,
        seq_length=seq_length,
        max_context=seq_length,
        max_input=int(nets["embedding"].input_shape(0)[1]),
        image_min_pixels=min(vision.image_min_pixels, limit),
        image_max_pixels=limit,
        video_min_pixels=min(vision.video_min_pixels, limit),
        video_max_pixels=limit,
        keeps_history=layout in ("history", "history-old"),
        factor=vision.factor,
        patch_size=vision.patch_size,
        layout=layout,
        chip=found.chip or None,
        family=family.family,
        pair_text_tokens=_pair_text(family, folder),
        chunked_prefill=layout in ("history", "history-old"),
    )


def _vision(family: ModelFamily, folder: Optional[Path]) -> VisionSpec:
    if folder is None:
        return family.vision_spec({}, {}, {})
    return QwenSpec.from_dir(folder, family=family).vision


def backend_geometry(backend: Any) -> Optional[ModelGeometry]:
    """The geometry of a backend config section, as its backend class states it."""
    return backend_class(backend.type).geometry(backend)


def input_builder(backend: Any):
    """The model-input builder of a backend config, from its files alone (no weights): to count
    prompt tokens before a model loads."""
    return backend_class(backend.type).input_builder(backend)


# -- the one rule --------------------------------------------------------------------------------


def _refuse(key: str, value: Any, problem: str, allowed: str, flags: Optional[dict] = None) -> ConfigError:
    flag = {**FLAGS, **(flags or {})}.get(key)
    where = f"{key} ({flag})" if flag else f"{key} (config only)"
    return ConfigError(f"{where} {value}: {problem}; allowed: {allowed}")


def fit_config(config: Any, geometry: ModelGeometry, flags: Optional[dict] = None) -> Any:
    """`config` with sampling and segmenting sized for this model. Values the config leaves
    unset come from the geometry; set values that do not fit raise ConfigError naming the key,
    the flag (`flags` renames a command's own: key -> flag) and the allowed range. Applying it
    twice changes nothing."""
    def refuse(key: str, value: Any, problem: str, allowed: str) -> ConfigError:
        return _refuse(key, value, problem, allowed, flags)

    sampling = config.sampling
    chosen = sampling.model_fields_set
    factor = sampling.video_area_factor
    token_pixels = geometry.factor**2
    image_max, video_max = geometry.image_max_pixels, geometry.video_max_pixels
    # sampling.max_pixels is the model's image max_pixels; video frames use video_area_factor of it.
    allowed_max = min(image_max, int(video_max / factor))
    lowest = int(token_pixels / factor) + 1
    if "max_pixels" not in chosen:
        max_pixels = min(DEFAULT_MAX_PIXELS, allowed_max)
    else:
        max_pixels = sampling.max_pixels
        if max_pixels > allowed_max:
            if max_pixels > image_max:
                why = f"is above {geometry.model}'s max_pixels {image_max}"
            else:
                why = (f"x video_area_factor {factor} gives video frames of {int(max_pixels * factor)} pixels, "
                       f"above {geometry.model}'s {video_max} per frame")
            raise refuse("sampling.max_pixels", _pixels(max_pixels, geometry.factor), why,
                          f"{lowest}..{allowed_max} pixels (e.g. {side(allowed_max, geometry.factor)}), or leave it unset for the model's")
        if max_pixels < lowest:
            raise refuse("sampling.max_pixels", _pixels(max_pixels, geometry.factor),
                          f"x video_area_factor {factor} leaves less than one {geometry.factor}x{geometry.factor} token a frame",
                          f"{lowest}..{allowed_max} pixels")
    video_pixels = int(max_pixels * factor)
    if "min_pixels" not in chosen:
        min_pixels = min(max(geometry.video_min_pixels, token_pixels, sampling.min_pixels), video_pixels)
    else:
        min_pixels = sampling.min_pixels
        if min_pixels > video_pixels:
            raise refuse("sampling.min_pixels", min_pixels,
                          f"is above the video frame size {video_pixels} (max_pixels {max_pixels} x "
                          f"video_area_factor {factor})", f"{token_pixels}..{video_pixels}")

    segmenting = config.segmenting
    limit = geometry.context_limit
    seq_length = segmenting.seq_length
    # A bmodel without history prefills the whole input in one launch of max_input rows: frames
    # and prompt must fit that, the answer the rest of the sequence.
    input_limit = geometry.input_limit(segmenting.answer_reserve)
    if seq_length is None:
        seq_length = input_limit or geometry.context
    elif limit and seq_length > limit:
        raise refuse("segmenting.seq_length", seq_length, f"is longer than {geometry.model}'s context of {limit} tokens",
                      f"64..{limit}, or leave it unset for {input_limit or geometry.context}")
    elif input_limit and seq_length > input_limit:
        raise refuse("segmenting.seq_length", seq_length,
                      f"leaves inputs longer than {geometry.model}'s prefill of {geometry.max_input} tokens "
                      f"(it has no history: the whole input is one launch)",
                      f"64..{input_limit} (max_input + answer_reserve), or leave it unset")
    answer = config.generation.max_new_tokens
    if answer >= seq_length:
        raise refuse("generation.max_new_tokens", answer, f"leaves no room for the input in a context of {seq_length} tokens",
                      f"1..{seq_length // 2}")
    fitted = config.model_copy(
        update={
            "sampling": sampling.model_copy(
                update={"max_pixels": max_pixels, "min_pixels": min_pixels, "token_pixels": geometry.factor}
            ),
            "segmenting": segmenting.model_copy(
                update={"seq_length": seq_length, "bmodel": None, "pair_text_tokens": geometry.pair_text_tokens}
            ),
        }
    )
    log.debug("fitted to %s (%s): max_pixels %d, min_pixels %d, seq_length %d",
              geometry.model, geometry.describe(), max_pixels, min_pixels, seq_length)
    return fitted


def _pixels(value: int, factor: int = 28) -> str:
    shape = side(value, factor)
    return f"{value} ({shape})" if shape != str(value) else str(value)


def fit_to_model(config: Any, flags: Optional[dict] = None) -> tuple[Any, Optional[ModelGeometry]]:
    """The geometry of config.backend and the config fitted to it (see fit_config); the config
    unchanged when the backend states no geometry."""
    if config.backend is None:
        raise ConfigError("the config has no backend section: say which model describes the segments")
    geometry = backend_geometry(config.backend)
    return (fit_config(config, geometry, flags) if geometry is not None else config), geometry
