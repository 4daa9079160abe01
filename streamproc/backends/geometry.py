"""What a model takes, known before its weights load: context, input and pixel limits, history.

Every backend states its geometry from files alone, in well under a second:
- a transformers checkpoint from config.json and its processor configs (preprocessor_config.json,
  video_preprocessor_config.json);
- a bmodel from its nets (bmodel_nets reads the file's description, not its weights): the
  decode block's KV length is the sequence length, the embedding's input the longest single
  prefill, the ViT's patch count the largest image or video frame, history nets whether it keeps
  the KV cache between turns.

`fit_config` is the one rule that turns a config into settings that fit the model: values the
user left unset come from the geometry, values the user set that do not fit are refused with a
message naming the config key, the command-line flag and the allowed range. The service, caption,
chat, bench and doctor all call it before any weight is loaded.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import ConfigError, ModelError
from ..qwen.config import VisionSpec

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 672 * 896  # Qwen2.5-VL bmodels' usual max_pixels; video frames use a quarter
DEFAULT_SEQ_LENGTH = 2048  # segments for a model without a hard context limit
MIN_TOKEN_PIXELS = 28 * 28

# The config key -> the flag of the commands that have one (for error messages).
FLAGS = {
    "sampling.max_pixels": "--max-pixels",
    "sampling.min_pixels": None,
    "sampling.fps": "--fps",
    "segmenting.seq_length": "--seq-length",
    "generation.max_new_tokens": "--max-new-tokens",
}


@dataclass(frozen=True)
class ModelGeometry:
    """Sizes a model takes. Pixel limits are per image, and per video frame (one ViT call)."""

    model: str  # a name for messages: the bmodel file or the checkpoint folder
    seq_length: Optional[int]  # hard context limit in tokens (bmodels); None: none
    max_context: Optional[int]  # the checkpoint's max_position_embeddings, if it says
    max_input: Optional[int]  # longest single prefill call in tokens; None: the whole context
    image_min_pixels: int
    image_max_pixels: int
    video_min_pixels: int
    video_max_pixels: int
    keeps_history: bool  # the KV cache survives a turn, so follow-ups prefill only new tokens
    factor: int = 28  # pixels per merged token on a side
    patch_size: int = 14
    layout: Optional[str] = None  # bmodel prefill layout: static, dynamic, history, history-old
    chip: Optional[str] = None

    @property
    def context(self) -> int:
        """The context segments are sized for by default."""
        if self.seq_length:
            return self.seq_length
        return min(DEFAULT_SEQ_LENGTH, self.max_context) if self.max_context else DEFAULT_SEQ_LENGTH

    @property
    def context_limit(self) -> Optional[int]:
        """The longest context a user may ask for (None: no limit known)."""
        return self.seq_length or self.max_context

    def describe(self) -> str:
        seq = f"seq {self.seq_length}" if self.seq_length else f"context {self.context_limit or 'unlimited'}"
        return (
            f"{seq}, images {_side(self.image_min_pixels)}..{_side(self.image_max_pixels)} px, video frames "
            f"{_side(self.video_min_pixels)}..{_side(self.video_max_pixels)} px"
            + (f", prefill {self.max_input} tokens a call" if self.max_input else "")
            + (", keeps history" if self.keeps_history else "")
        )


def _side(pixels: int) -> str:
    """A pixel count as the squarest HEIGHTxWIDTH of 28-multiples (height <= width), when one
    exists; else the count."""
    best = None
    for height in range(28, int(pixels**0.5) + 1, 28):
        if pixels % height == 0 and (pixels // height) % 28 == 0:
            best = (height, pixels // height)
    return f"{best[0]}x{best[1]}" if best else str(pixels)


# -- from the files ------------------------------------------------------------------------------


def checkpoint_geometry(path: str | Path) -> ModelGeometry:
    """A Qwen2.5-VL checkpoint (or tokenizer) folder: pixel limits from its processor configs."""
    from ..qwen.config import QwenSpec

    spec = QwenSpec.from_dir(Path(path).expanduser())
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
    )


def bmodel_geometry(bmodel: str | Path, tokenizer: Optional[str | Path] = None) -> ModelGeometry:
    """A Qwen2.5-VL bmodel, from its nets: the ViT's patches bound images and frames (not the
    tokenizer folder's preprocessor_config, which describes the original checkpoint)."""
    from .bmodel_nets import read_bmodel_nets

    found = read_bmodel_nets(bmodel)
    nets = found.nets
    needed = ("embedding", "vit", "block_0", "block_cache_0")
    missing = [n for n in needed if n not in nets]
    if missing:
        raise ModelError(
            f"{found.path.name} is not a Qwen2.5-VL bmodel: it lacks the nets {', '.join(missing)} "
            f"(it has {', '.join(sorted(nets)[:8])})"
        )
    vision = _tokenizer_vision(tokenizer)
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
    )


def _tokenizer_vision(tokenizer: Optional[str | Path]) -> VisionSpec:
    if tokenizer is None:
        return VisionSpec()
    from ..qwen.config import QwenSpec

    return QwenSpec.from_dir(Path(tokenizer).expanduser()).vision


def backend_geometry(backend: Any) -> Optional[ModelGeometry]:
    """The geometry of a backend config section (hf or tpu), or of a third-party backend whose
    class has a `geometry(config)` static method (None when it has none)."""
    kind = getattr(backend, "type", None)
    if kind == "tpu":
        return bmodel_geometry(backend.bmodel, backend.tokenizer)
    if kind == "hf":
        from .hf import resolve_model_dir

        return checkpoint_geometry(resolve_model_dir(backend.model))
    from .base import backend_class

    geometry = getattr(backend_class(kind), "geometry", None)
    return geometry(backend) if geometry is not None else None


def input_builder(backend: Any):
    """The model-input builder of a backend config, from its tokenizer folder alone (no weights):
    to count prompt tokens before a model loads. None for backends without a tokenizer folder."""
    from ..qwen import InputBuilder

    kind = getattr(backend, "type", None)
    if kind == "tpu":
        return InputBuilder.from_pretrained(Path(backend.tokenizer).expanduser())
    if kind == "hf":
        from .hf import resolve_model_dir

        return InputBuilder.from_pretrained(resolve_model_dir(backend.model))
    return None


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
    image_max, video_max = geometry.image_max_pixels, geometry.video_max_pixels
    # sampling.max_pixels is the model's image max_pixels; video frames use video_area_factor of it.
    allowed_max = min(image_max, int(video_max / factor))
    lowest = int(MIN_TOKEN_PIXELS / factor) + 1
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
            raise refuse("sampling.max_pixels", _pixels(max_pixels), why,
                          f"{lowest}..{allowed_max} pixels (e.g. {_side(allowed_max)}), or leave it unset for the model's")
        if max_pixels < lowest:
            raise refuse("sampling.max_pixels", _pixels(max_pixels),
                          f"x video_area_factor {factor} leaves less than one 28x28 token a frame",
                          f"{lowest}..{allowed_max} pixels")
    video_pixels = int(max_pixels * factor)
    if "min_pixels" not in chosen:
        min_pixels = min(max(geometry.video_min_pixels, MIN_TOKEN_PIXELS, sampling.min_pixels), video_pixels)
    else:
        min_pixels = sampling.min_pixels
        if min_pixels > video_pixels:
            raise refuse("sampling.min_pixels", min_pixels,
                          f"is above the video frame size {video_pixels} (max_pixels {max_pixels} x "
                          f"video_area_factor {factor})", f"{MIN_TOKEN_PIXELS}..{video_pixels}")

    segmenting = config.segmenting
    limit = geometry.context_limit
    seq_length = segmenting.seq_length
    if seq_length is None:
        seq_length = geometry.context
    elif limit and seq_length > limit:
        raise refuse("segmenting.seq_length", seq_length, f"is longer than {geometry.model}'s context of {limit} tokens",
                      f"64..{limit}, or leave it unset for {geometry.context}")
    answer = config.generation.max_new_tokens
    if answer >= seq_length:
        raise refuse("generation.max_new_tokens", answer, f"leaves no room for the input in a context of {seq_length} tokens",
                      f"1..{seq_length // 2}")
    fitted = config.model_copy(
        update={
            "sampling": sampling.model_copy(update={"max_pixels": max_pixels, "min_pixels": min_pixels}),
            "segmenting": segmenting.model_copy(update={"seq_length": seq_length, "bmodel": None}),
        }
    )
    log.debug("fitted to %s (%s): max_pixels %d, min_pixels %d, seq_length %d",
              geometry.model, geometry.describe(), max_pixels, min_pixels, seq_length)
    return fitted


def _pixels(value: int) -> str:
    side = _side(value)
    return f"{value} ({side})" if side != str(value) else str(value)


def fit_to_model(config: Any, flags: Optional[dict] = None) -> tuple[Any, Optional[ModelGeometry]]:
    """The geometry of config.backend and the config fitted to it (see fit_config); the config
    unchanged when the backend states no geometry."""
    if config.backend is None:
        raise ConfigError("the config has no backend section: say which model describes the segments")
    geometry = backend_geometry(config.backend)
    return (fit_config(config, geometry, flags) if geometry is not None else config), geometry
