"""Backend-neutral Qwen2.5-VL model inputs: chat template, pixel rows, 3-D mRoPE ids, ViT layout.

Only numpy, tokenizers and PyAV (for resizing images): no torch, so the TPU path can use it.
"""
from .config import QwenSpec, TokenIds, VisionSpec
from .inputs import InputBuilder, ModelInputs, VisualBlock, VitChunk
from .prompt import DEFAULT_SYSTEM_PROMPT, Message, Vision, render_chat
from .tokenizer import QwenTokenizer
from .vit_layout import VitLayout, block_mask, grid_chunks

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "InputBuilder",
    "Message",
    "ModelInputs",
    "QwenSpec",
    "QwenTokenizer",
    "TokenIds",
    "Vision",
    "VisionSpec",
    "VisualBlock",
    "VitChunk",
    "VitLayout",
    "block_mask",
    "grid_chunks",
    "render_chat",
]
