"""What the model-input module needs to know about a checkpoint, read without transformers.

Only tokenizer.json is required: a TPU deployment ships the tokenizer folder beside the bmodel,
not the whole checkpoint. config.json (the family, vision geometry, token ids) and the processor
configs (pixel limits) are read when present; otherwise the family's published values apply (the
family comes from config.json, else from the caller: a bmodel's nets), and the special token ids
come from the tokenizer's own vocabulary.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import ModelError
from .families import DEFAULT as DEFAULT_FAMILY, family_of_config
from .family import ModelFamily
from .prompt import DEFAULT_SYSTEM_PROMPT, template_default_system
from .vision import CLIP_MEAN, CLIP_STD, VisionSpec  # noqa: F401  (VisionSpec is part of this module's API)

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
IMAGE_PROCESSOR_FILE = "preprocessor_config.json"
VIDEO_PROCESSOR_FILE = "video_preprocessor_config.json"

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
    family: ModelFamily = DEFAULT_FAMILY
    model_type: Optional[str] = None  # from config.json; None when there is none
    hidden_size: Optional[int] = None
    vocab_size: Optional[int] = None
    max_position_embeddings: Optional[int] = None
    mrope_section: Optional[tuple[int, ...]] = None
    # The system turn the folder's chat template adds when a conversation has none (None: none).
    default_system: Optional[str] = DEFAULT_SYSTEM_PROMPT

    @classmethod
    def from_dir(
        cls, path: str | Path, vocab: Optional[dict[str, int]] = None, family: Optional[ModelFamily] = None
    ) -> "QwenSpec":
        """Read a checkpoint or tokenizer folder. `vocab` (token -> id) supplies the special ids;
        `family` is the model's when the caller knows it (a bmodel's nets), else config.json's."""
        path = Path(path)
        if not path.is_dir():
            raise ModelError(f"model folder {path} does not exist (or is not a folder)")
        if not (path / TOKENIZER_FILE).is_file():
            raise ModelError(f"model folder {path} has no {TOKENIZER_FILE}: it is missing files")
        config = _read_json(path / CONFIG_FILE)
        found = family_of_config(config, str(path))
        if family is not None and config and found is not family:
            raise ModelError(f"{path} holds a {found.label} checkpoint, but the model is {family.label}: use its own tokenizer folder")
        family = family or found
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
            vision=_vision_spec(path, family, config.get("vision_config") or {}),
            family=family,
            model_type=config.get("model_type"),
            hidden_size=text_value("hidden_size"),
            vocab_size=text_value("vocab_size"),
            max_position_embeddings=text_value("max_position_embeddings"),
            mrope_section=tuple(section) if section else None,
            default_system=template_default_system(path, family.default_system),
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


def _vision_spec(path: Path, family: ModelFamily, vision: dict[str, Any]) -> VisionSpec:
    image = _read_json(path / IMAGE_PROCESSOR_FILE)
    # transformers falls back to the image processor's file when there is no video one.
    video = _read_json(path / VIDEO_PROCESSOR_FILE) or image
    try:
        spec = family.vision_spec(vision, image, video)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None
    if spec.in_channels != 3:
        raise ModelError(f"{path}: vision in_channels {spec.in_channels} is not 3 (RGB)")
    log.debug("vision spec of %s (%s): %s", path, family.label, spec)
    return spec
