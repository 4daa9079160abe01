"""Qwen3-VL: the family's rules (see family.py for the interface).

Facts (transformers 4.57 Qwen3VL*, Qwen/Qwen3-VL-4B-Instruct's configs, Sophgo's LLM-TPU
models/Qwen3_VL): 16 px patches merged 2x2 (32 px a token); full attention within a frame pair;
a learned position-embedding grid (num_position_embeddings = side^2) interpolated to each grid;
DeepStack: the ViT layers in deepstack_visual_indexes give extra merged features that the language
model adds to the visual positions' hidden states after its first len(...) decoder layers; mean
and std 0.5. A video is one vision block per frame pair, each after its timestamp in the text:
"<{t:.1f} seconds>" where t is the mean time of the pair's two frames (the last frame repeated for
an odd count), and every block has temporal position 0 (time is in the text). The chat template
adds no system turn of its own.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

from ..errors import ModelError
from .family import Family, MediaText, ModelFamily, PadRun, TinySpec
from .prompt import IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START
from .qwen2_5 import processor_pixels
from .vision import VisionSpec
from .vit_layout import InterpolatedLayout, VitLayout

HALF = (0.5, 0.5, 0.5)
# Qwen3-VL's published processor limits (Qwen/Qwen3-VL-4B-Instruct): images, and a video's
# frames taken together.
IMAGE_MIN_PIXELS = 65536
IMAGE_MAX_PIXELS = 16777216
VIDEO_MIN_PIXELS = 4096
VIDEO_TOTAL_PIXELS = 25165824
# Timestamps a segment's frame pairs may carry, for an upper bound of their tokens.
_STAMP_SAMPLES = (0.5, 10.5, 100.5, 1000.5, 10000.5)


def timestamp(pair: int, frames: int, fps: float, temporal: int = 2) -> float:
    """Seconds shown before frame pair `pair` of a `frames`-frame video sampled at `fps`: the mean
    time of the pair's first and last frame, the last frame standing in for missing ones."""
    first = pair * temporal
    last = min(first + temporal - 1, frames - 1)
    return (first + last) / 2 / fps


def stamp_text(seconds: float) -> str:
    return f"<{seconds:.1f} seconds>"


class Qwen3VL(ModelFamily):
    family = Family.QWEN3_VL
    model_types = ("qwen3_vl",)
    hf_class = "Qwen3VLForConditionalGeneration"
    token_pixels = 32
    default_system = None

    def vision_spec(self, vision: Mapping[str, Any], image: Mapping[str, Any], video: Mapping[str, Any]) -> VisionSpec:
        positions = int(vision.get("num_position_embeddings", 2304))
        side = math.isqrt(positions)
        if side * side != positions:
            raise ModelError(f"vision num_position_embeddings {positions} is not a square grid")
        image_max = processor_pixels(image, "max_pixels", "longest_edge", IMAGE_MAX_PIXELS)
        spec = VisionSpec(
            patch_size=int(vision.get("patch_size", image.get("patch_size", 16))),
            temporal_patch_size=int(vision.get("temporal_patch_size", 2)),
            spatial_merge_size=int(vision.get("spatial_merge_size", image.get("merge_size", 2))),
            window_size=0,
            fullatt_block_indexes=(),
            tokens_per_second=0.0,
            in_channels=int(vision.get("in_channels", vision.get("in_chans", 3))),
            image_min_pixels=processor_pixels(image, "min_pixels", "shortest_edge", IMAGE_MIN_PIXELS),
            image_max_pixels=image_max,
            # The video processor's limits are over all of a video's frames; a frame alone is
            # bounded by what an image may be, and by the whole video's budget.
            video_min_pixels=max(1, processor_pixels(video, "min_pixels", "shortest_edge", VIDEO_MIN_PIXELS) // 2),
            video_max_pixels=min(image_max, processor_pixels(video, "max_pixels", "longest_edge", VIDEO_TOTAL_PIXELS) // 2),
            image_mean=tuple(image.get("image_mean", HALF)),  # type: ignore[arg-type]
            image_std=tuple(image.get("image_std", HALF)),  # type: ignore[arg-type]
            deepstack_indexes=tuple(int(i) for i in vision.get("deepstack_visual_indexes", (8, 16, 24))),
            position_grid=side,
        )
        return spec

    def media_text(self, kind: str, frames: int, fps: Optional[float]) -> MediaText:
        if kind == "image":
            return MediaText(f"{VISION_START}{IMAGE_PAD}{VISION_END}", (PadRun(0, 1),))
        grids = -(-frames // 2)
        parts = [f"{stamp_text(timestamp(k, frames, fps or 1.0))}{VISION_START}{VIDEO_PAD}{VISION_END}" for k in range(grids)]
        return MediaText("".join(parts), tuple(PadRun(k, k + 1) for k in range(grids)))

    def pair_text_tokens(self, encode) -> int:
        start_end = 2  # <|vision_start|> and <|vision_end|> around each frame pair
        return max(len(encode(stamp_text(s))) for s in _STAMP_SAMPLES) + start_end

    def vit_layout(self, vision: VisionSpec, t: int, h: int, w: int) -> VitLayout:
        return InterpolatedLayout.for_grid(t, h, w, vision.spatial_merge_size, vision.position_grid)

    def owns_vit(self, inputs: Sequence[tuple[int, ...]], outputs: int) -> bool:
        # input_states, position_ids, pos_idx [P,4], pos_weight [P,4,1], (attention_mask)
        return len(inputs) in (4, 5) and tuple(inputs[2][-1:]) == (4,) and len(inputs[3]) == 3

    def tiny(self, special_tokens: Mapping[str, int]) -> TinySpec:
        from .tiny_specs import qwen3_tiny

        return qwen3_tiny(special_tokens, HALF)


QWEN3_VL = Qwen3VL()
