"""VisionSpec: the ViT geometry and pixel pre-processing of one checkpoint (any family).

The defaults are Qwen2.5-VL's published values; each family (qwen2_5.py, qwen3.py) reads its own
from config.json and the processor configs. Fields a family does not use keep their defaults
(window attention is Qwen2.5-VL's; DeepStack and the learned position grid are Qwen3-VL's).
"""
from __future__ import annotations

from dataclasses import dataclass

# OpenAI CLIP normalisation, which Qwen2.5-VL's processors use.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


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
    video_max_pixels: int = 28 * 28 * 768  # per frame
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    deepstack_indexes: tuple[int, ...] = ()  # ViT layers whose features are added to the LM's first layers
    position_grid: int = 0  # side of the learned position-embedding grid (0: none)

    @property
    def factor(self) -> int:
        """Pixels a merged token spans on each side (28 for Qwen2.5-VL, 32 for Qwen3-VL)."""
        return self.patch_size * self.spatial_merge_size

    @property
    def merge_unit(self) -> int:
        """Patches per merged token (4)."""
        return self.spatial_merge_size**2

    @property
    def window_tokens(self) -> int:
        """Merged tokens a window spans on each side (4); 0 without window attention."""
        return self.window_size // self.spatial_merge_size // self.patch_size if self.window_size else 0

    @property
    def patch_features(self) -> int:
        """Values in one pixel row: channels x temporal patch x patch x patch (1176 or 1536)."""
        return self.in_channels * self.temporal_patch_size * self.patch_size**2
