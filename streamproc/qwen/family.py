"""The model family seam: everything that differs between Qwen2.5-VL and Qwen3-VL, behind one interface.

A family says how its checkpoints describe their vision geometry, how an image or a video becomes
prompt text and visual tokens, how their 3-D positions are laid out, how a ViT call is fed, and
what its tiny test checkpoint looks like. The rest of streamproc asks `families.family_of_config` (a
checkpoint's config.json) or `families.family_of_nets` (a bmodel's nets) for the family once and
then only talks to this interface: no other module names a family.

Families (`Family`):
- Qwen2.5-VL: 14 px patches merged 2x2 (28 px a token), window attention in the ViT (tokens
  reordered window by window), time in the temporal position ids (second_per_grid x
  tokens_per_second), CLIP normalisation, a default system turn in the chat template.
- Qwen3-VL: 16 px patches merged 2x2 (32 px a token), full attention within each frame pair,
  learned position embeddings interpolated per grid (four indices and weights per patch),
  DeepStack features added to the first decoder layers' hidden states, video as one vision block
  per frame pair with its timestamp in the text (`<0.5 seconds>`) and temporal position 0, mean
  and std 0.5, no default system turn.
"""
from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from .vision import VisionSpec
from .vit_layout import VitLayout


class Family(enum.Enum):
    QWEN2_5_VL = "qwen2.5-vl"
    QWEN3_VL = "qwen3-vl"

    @property
    def label(self) -> str:
        return {"qwen2.5-vl": "Qwen2.5-VL", "qwen3-vl": "Qwen3-VL"}[self.value]


@dataclass(frozen=True)
class PadRun:
    """Where one run of visual pad tokens sits in a media item's own text: the run's grids
    [t0, t1) of the item (one temporal grid is one frame pair)."""

    t0: int
    t1: int


@dataclass(frozen=True)
class MediaText:
    """What an image or video contributes to the prompt: `text` has one pad token per run (the
    runs in order); each pad is later repeated once per merged visual token of its grids."""

    text: str
    runs: tuple[PadRun, ...]


@dataclass(frozen=True)
class TinySpec:
    """A family's tiny random checkpoint: its config.json, weights and processor files."""

    config: dict
    weight_shapes: tuple[tuple[str, tuple[int, ...], str], ...]  # (name, shape, init kind)
    image_processor: dict
    video_processor: dict
    chat_template: str


class ModelFamily(abc.ABC):
    """One model family's rules. Instances are stateless singletons (see FAMILIES)."""

    family: Family
    model_types: tuple[str, ...]  # config.json model_type values
    hf_class: str  # the transformers class that loads a checkpoint
    token_pixels: int  # pixels a merged token spans on each side (patch x merge)
    default_system: Optional[str]  # the system turn the published chat template adds (None: none)

    @property
    def label(self) -> str:
        return self.family.label

    # -- checkpoint files -------------------------------------------------------------------

    @abc.abstractmethod
    def vision_spec(self, vision: Mapping[str, Any], image: Mapping[str, Any], video: Mapping[str, Any]) -> VisionSpec:
        """The vision geometry from config.json's vision_config and the processor configs."""

    # -- prompt text and positions ----------------------------------------------------------

    @abc.abstractmethod
    def media_text(self, kind: str, frames: int, fps: Optional[float]) -> MediaText:
        """The text of an image (`frames` is 1) or a video of `frames` frames sampled at `fps`
        (frame pairs: an odd count repeats its last frame)."""

    def time_step(self, vision: VisionSpec, kind: str, fps: Optional[float]) -> float:
        """Temporal position step per frame pair of a run (0: all of a run's grids at t=0)."""
        return 0.0

    def pair_text_tokens(self, encode) -> int:
        """Text tokens a video adds per frame pair besides its visual tokens (an upper bound for
        segments of any length); `encode` is the tokenizer's text -> ids."""
        return 0

    # -- the ViT ----------------------------------------------------------------------------

    @abc.abstractmethod
    def vit_layout(self, vision: VisionSpec, t: int, h: int, w: int) -> VitLayout:
        """The ViT layout of one grid of t x h x w patches."""

    # -- the tiny checkpoint ----------------------------------------------------------------

    @abc.abstractmethod
    def tiny(self, special_tokens: Mapping[str, int]) -> TinySpec:
        """The family's tiny test checkpoint, around the shared tiny tokenizer's special ids."""

    # -- bmodels ----------------------------------------------------------------------------

    @abc.abstractmethod
    def owns_vit(self, inputs: Sequence[tuple[int, ...]], outputs: int) -> bool:
        """Whether a bmodel's `vit` net (its input shapes, its output count) is this family's."""

    def patch_features(self, vision: VisionSpec) -> int:
        return vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
