"""What the model-input module needs to know about a Qwen2.5-VL checkpoint, read without transformers.

Only tokenizer.json is required: a TPU deployment ships the tokenizer folder beside the bmodel,
not the whole checkpoint. config.json (vision geometry, token ids) and the processor configs
(pixel limits) are read when present; otherwise Qwen2.5-VL's published values apply, and the
special token ids come from the tokenizer's own vocabulary.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import ModelError
from .prompt import DEFAULT_SYSTEM_PROMPT, template_default_system

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
IMAGE_PROCESSOR_FILE = "preprocessor_config.json"
VIDEO_PROCESSOR_FILE = "video_preprocessor_config.json"

# OpenAI CLIP normalisation, which Qwen2.5-VL's processors use.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


@dataclass(frozen=True)
class VisionSpec:
    """Geometry of the ViT and the pixel pre-processing."""

    patch_size: int = 14
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    window_size: int = 112  # pixels; windows of window_size / (patch * merge) merged tokens a side
    fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)
    tokens_per_second: float = 2.0
    in_channels: int = 3
    image_min_pixels: int = 56 * 56
    image_max_pixels: int = 28 * 28 * 1280
    video_min_pixels: int = 56 * 56
    video_max_pixels: int = 28 * 28 * 768
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD

    @property
    def factor(self) -> int:
        """Pixels a merged token spans on each side (28)."""
        return self.patch_size * self.spatial_merge_size

    @property
    def merge_unit(self) -> int:
        """Patches per merged token (4)."""
        return self.spatial_merge_size**2

    @property
    def window_tokens(self) -> int:
        """Merged tokens a window spans on each side (4)."""
        return self.window_size // self.spatial_merge_size // self.patch_size

    @property
    def patch_features(self) -> int:
        """Values in one pixel row: channels x temporal patch x patch x patch (1176)."""
        return self.in_channels * self.temporal_patch_size * self.patch_size**2


@dataclass(frozen=True)
class TokenIds:
    endoftext: int
    im_start: int
    im_end: int
    vision_start: int
    vision_end: int
    image_pad: int
    video_pad: int

    @property
    def stop_ids(self) -> tuple[int, int]:
        return (self.im_end, self.endoftext)


@dataclass(frozen=True)
class QwenSpec:
    """Everything about a checkpoint that shapes its inputs."""

    path: Path
    tokens: TokenIds
    vision: VisionSpec = field(default_factory=VisionSpec)
    model_type: Optional[str] = None  # from config.json; None when there is none
    hidden_size: Optional[int] = None
    vocab_size: Optional[int] = None
    max_position_embeddings: Optional[int] = None
    mrope_section: Optional[tuple[int, ...]] = None
    # The system turn the folder's chat template adds when a conversation has none (None: none).
    default_system: Optional[str] = DEFAULT_SYSTEM_PROMPT

    @classmethod
    def from_dir(cls, path: str | Path, vocab: Optional[dict[str, int]] = None) -> "QwenSpec":
        """Read a checkpoint or tokenizer folder. `vocab` (token -> id) supplies the special ids."""
        path = Path(path)
        if not path.is_dir():
            raise ModelError(f"model folder {path} does not exist (or is not a folder)")
        if not (path / TOKENIZER_FILE).is_file():
            raise ModelError(f"model folder {path} has no {TOKENIZER_FILE}: it is missing files")
        config = _read_json(path / CONFIG_FILE)
        if vocab is None:
            vocab = _vocab_specials(path / TOKENIZER_FILE)
        missing = [name for name in SPECIAL_TOKENS if name not in vocab]
        if missing:
            raise ModelError(f"{path / TOKENIZER_FILE} lacks Qwen's special tokens {', '.join(missing)}")
        tokens = TokenIds(*(vocab[name] for name in SPECIAL_TOKENS))
        text = config.get("text_config") or {}

        def text_value(key: str) -> Any:
            return config.get(key, text.get(key))

        if config:
            _check_ids(path, config, tokens)
        rope = text_value("rope_scaling") or {}
        section = rope.get("mrope_section")
        return cls(
            path=path,
            tokens=tokens,
            vision=_vision_spec(path, config.get("vision_config") or {}),
            model_type=config.get("model_type"),
            hidden_size=text_value("hidden_size"),
            vocab_size=text_value("vocab_size"),
            max_position_embeddings=text_value("max_position_embeddings"),
            mrope_section=tuple(section) if section else None,
            default_system=template_default_system(path),
        )


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object")
    return data


def _vocab_specials(path: Path) -> dict[str, int]:
    """Special token ids from tokenizer.json's added tokens and vocabulary (no tokenizer needed)."""
    data = _read_json(path)
    found = {entry["content"]: int(entry["id"]) for entry in data.get("added_tokens", []) if "content" in entry}
    model_vocab = (data.get("model") or {}).get("vocab") or {}
    for name in SPECIAL_TOKENS:
        if name not in found and name in model_vocab:
            found[name] = int(model_vocab[name])
    return found


def _check_ids(path: Path, config: dict[str, Any], tokens: TokenIds) -> None:
    """config.json and the tokenizer must agree, or visual tokens would be embedded as text."""
    expected = {
        "image_token_id": tokens.image_pad,
        "video_token_id": tokens.video_pad,
        "vision_start_token_id": tokens.vision_start,
        "vision_end_token_id": tokens.vision_end,
    }
    wrong = [
        f"{key}={config[key]} (tokenizer: {value})"
        for key, value in expected.items()
        if key in config and config[key] != value
    ]
    if wrong:
        raise ModelError(f"{path / CONFIG_FILE} disagrees with its tokenizer: {', '.join(wrong)}")


def _vision_spec(path: Path, vision: dict[str, Any]) -> VisionSpec:
    defaults = VisionSpec()
    image = _read_json(path / IMAGE_PROCESSOR_FILE)
    # transformers falls back to the image processor's file when there is no video one.
    video = _read_json(path / VIDEO_PROCESSOR_FILE) or image

    def pixels(proc: dict[str, Any], key: str, size_key: str, default: int) -> int:
        value = proc.get(key) or (proc.get("size") or {}).get(size_key)
        return int(value) if value else default

    fullatt = vision.get("fullatt_block_indexes", defaults.fullatt_block_indexes)
    spec = VisionSpec(
        patch_size=int(vision.get("patch_size", image.get("patch_size", defaults.patch_size))),
        temporal_patch_size=int(vision.get("temporal_patch_size", defaults.temporal_patch_size)),
        spatial_merge_size=int(vision.get("spatial_merge_size", image.get("merge_size", defaults.spatial_merge_size))),
        window_size=int(vision.get("window_size", defaults.window_size)),
        fullatt_block_indexes=tuple(int(i) for i in fullatt),
        tokens_per_second=float(vision.get("tokens_per_second", defaults.tokens_per_second)),
        in_channels=int(vision.get("in_chans", vision.get("in_channels", defaults.in_channels))),
        image_min_pixels=pixels(image, "min_pixels", "shortest_edge", defaults.image_min_pixels),
        image_max_pixels=pixels(image, "max_pixels", "longest_edge", defaults.image_max_pixels),
        video_min_pixels=pixels(video, "min_pixels", "shortest_edge", defaults.video_min_pixels),
        video_max_pixels=pixels(video, "max_pixels", "longest_edge", defaults.video_max_pixels),
        image_mean=tuple(image.get("image_mean", defaults.image_mean)),  # type: ignore[arg-type]
        image_std=tuple(image.get("image_std", defaults.image_std)),  # type: ignore[arg-type]
    )
    if spec.in_channels != 3:
        raise ModelError(f"{path}: vision in_channels {spec.in_channels} is not 3 (RGB)")
    if spec.window_size % spec.factor:
        raise ModelError(f"{path}: vision window_size {spec.window_size} is not a multiple of {spec.factor}")
    log.debug("vision spec of %s: %s", path, spec)
    return spec
