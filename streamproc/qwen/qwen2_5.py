"""Qwen2.5-VL: the family's rules (see family.py for the interface).

Facts (transformers 4.49-4.57 Qwen2_5_VL*, Qwen's published configs): 14 px patches merged 2x2,
window attention in 112 px windows except the fullatt_block_indexes layers, CLIP normalisation,
video time in the temporal position ids (floor(k x second_per_grid x tokens_per_second) for frame
pair k, second_per_grid = temporal_patch_size / fps), one vision block per image or video, and a
chat template that adds "You are a helpful assistant." when a conversation has no system turn.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from ..errors import ModelError
from .family import Family, MediaText, ModelFamily, PadRun, TinySpec
from .prompt import DEFAULT_SYSTEM_PROMPT, IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START
from .vision import CLIP_MEAN, CLIP_STD, VisionSpec
from .vit_layout import VitLayout, WindowLayout

DEFAULTS = VisionSpec()


def processor_pixels(proc: Mapping[str, Any], key: str, size_key: str, default: int) -> int:
    """A pixel limit from a processor config: its own key, else size.{shortest,longest}_edge."""
    value = proc.get(key) or (proc.get("size") or {}).get(size_key)
    return int(value) if value else default


class Qwen25VL(ModelFamily):
    family = Family.QWEN2_5_VL
    model_types = ("qwen2_5_vl",)
    hf_class = "Qwen2_5_VLForConditionalGeneration"
    token_pixels = 28
    default_system = DEFAULT_SYSTEM_PROMPT

    def vision_spec(self, vision: Mapping[str, Any], image: Mapping[str, Any], video: Mapping[str, Any]) -> VisionSpec:
        d = DEFAULTS
        fullatt = vision.get("fullatt_block_indexes", d.fullatt_block_indexes)
        spec = VisionSpec(
            patch_size=int(vision.get("patch_size", image.get("patch_size", d.patch_size))),
            temporal_patch_size=int(vision.get("temporal_patch_size", d.temporal_patch_size)),
            spatial_merge_size=int(vision.get("spatial_merge_size", image.get("merge_size", d.spatial_merge_size))),
            window_size=int(vision.get("window_size", d.window_size)),
            fullatt_block_indexes=tuple(int(i) for i in fullatt),
            tokens_per_second=float(vision.get("tokens_per_second", d.tokens_per_second)),
            in_channels=int(vision.get("in_chans", vision.get("in_channels", d.in_channels))),
            image_min_pixels=processor_pixels(image, "min_pixels", "shortest_edge", d.image_min_pixels),
            image_max_pixels=processor_pixels(image, "max_pixels", "longest_edge", d.image_max_pixels),
            video_min_pixels=processor_pixels(video, "min_pixels", "shortest_edge", d.video_min_pixels),
            video_max_pixels=processor_pixels(video, "max_pixels", "longest_edge", d.video_max_pixels),
            image_mean=tuple(image.get("image_mean", d.image_mean)),  # type: ignore[arg-type]
            image_std=tuple(image.get("image_std", d.image_std)),  # type: ignore[arg-type]
        )
        if spec.window_size % spec.factor:
            raise ModelError(f"vision window_size {spec.window_size} is not a multiple of {spec.factor}")
        return spec

    def media_text(self, kind: str, frames: int, fps: Optional[float]) -> MediaText:
        pad = IMAGE_PAD if kind == "image" else VIDEO_PAD
        return MediaText(f"{VISION_START}{pad}{VISION_END}", (PadRun(0, -(-frames // 2)),))

    def time_step(self, vision: VisionSpec, kind: str, fps: Optional[float]) -> float:
        if kind != "video" or not fps:
            return 0.0
        return vision.temporal_patch_size / fps * vision.tokens_per_second

    def vit_layout(self, vision: VisionSpec, t: int, h: int, w: int) -> VitLayout:
        return WindowLayout.for_grid(t, h, w, vision.spatial_merge_size, vision.window_tokens)

    def owns_vit(self, inputs: Sequence[tuple[int, ...]], outputs: int) -> bool:
        # input_states, position_ids, full_attn_mask [1,1,P,P], window_attn_mask, reverse_index
        return len(inputs) == 5 and len(inputs[2]) == 4 and len(inputs[4]) == 1 and outputs == 1

    def tiny(self, special_tokens: Mapping[str, int]) -> TinySpec:
        from .tiny_specs import qwen2_5_tiny

        return qwen2_5_tiny(special_tokens, CLIP_MEAN, CLIP_STD)


QWEN2_5_VL = Qwen25VL()
