"""Backend-neutral model inputs for Qwen2.5-VL and Qwen3-VL: chat template, pixel rows, 3-D mRoPE
ids, ViT layout. What differs between the two families is behind `family.ModelFamily`.

Only numpy, tokenizers and PyAV (for resizing images): no torch, so the TPU path can use it.
"""
from .builder import InputBuilder, RequestBuilder
from .config import QwenSpec, TokenIds, VisionSpec
from .families import family_names, family_of_config, family_of_nets, get_family
from .family import Family, ModelFamily
from .inputs import ModelInputs, VisualBlock, VitChunk
from .prompt import DEFAULT_SYSTEM_PROMPT, Message, Vision, render_chat
from .tokenizer import QwenTokenizer
from .vit_layout import InterpolatedLayout, VitLayout, WindowLayout, block_mask, grid_chunks

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "Family",
    "InputBuilder",
    "InterpolatedLayout",
    "Message",
    "ModelFamily",
    "ModelInputs",
    "QwenSpec",
    "QwenTokenizer",
    "RequestBuilder",
    "TokenIds",
    "Vision",
    "VisionSpec",
    "VisualBlock",
    "VitChunk",
    "VitLayout",
    "WindowLayout",
    "block_mask",
    "family_names",
    "family_of_config",
    "family_of_nets",
    "get_family",
    "grid_chunks",
    "render_chat",
]
