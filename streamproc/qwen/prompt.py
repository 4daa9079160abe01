"""Qwen2.5-VL's chat template, in Python, and the expansion of visual pad tokens.

The published template (chat_template.json of Qwen/Qwen2.5-VL-*-Instruct) renders:

    <|im_start|>system\\n{system}<|im_end|>\\n            (a default system turn when the first
    <|im_start|>user\\n{parts}<|im_end|>\\n                 message is not a system one)
    <|im_start|>assistant\\n                                (the generation prompt)

where an image part is <|vision_start|><|image_pad|><|vision_end|> and a video part the same
with <|video_pad|>; text parts are written as they are, with nothing between parts. Each single
pad token is then repeated once per merged visual token. Rendering to text and tokenising
once, then expanding pads in the id array, gives the same ids as transformers (which expands in
the text): special tokens split the text either way, so the text between them tokenises alike.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from ..errors import ModelError

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"


class Vision(enum.Enum):
    """A visual part of a user turn: one image or one video, each its own vision block."""

    IMAGE = "image"
    VIDEO = "video"

    @property
    def text(self) -> str:
        pad = IMAGE_PAD if self is Vision.IMAGE else VIDEO_PAD
        return f"{VISION_START}{pad}{VISION_END}"


Part = Union[str, Vision]


@dataclass(frozen=True)
class Message:
    role: str  # system | user | assistant
    content: Union[str, Sequence[Part]]

    def render(self) -> str:
        if isinstance(self.content, str):
            body = self.content
        else:
            body = "".join(part.text if isinstance(part, Vision) else part for part in self.content)
        return f"{IM_START}{self.role}\n{body}{IM_END}\n"


def render_chat(
    messages: Sequence[Message], add_generation_prompt: bool = True, default_system: bool = True
) -> str:
    """The template's text. `default_system=False` renders a continuation (no system turn added)."""
    parts = []
    if default_system and messages and messages[0].role != "system":
        parts.append(Message("system", DEFAULT_SYSTEM_PROMPT).render())
    parts.extend(message.render() for message in messages)
    if add_generation_prompt:
        parts.append(f"{IM_START}assistant\n")
    return "".join(parts)


def conversation(
    text: str, visuals: Sequence[Vision] = (), system: str | None = DEFAULT_SYSTEM_PROMPT
) -> list[Message]:
    """System turn (None: the template's default) and one user turn: visuals first, then text."""
    messages = [] if system is None else [Message("system", system)]
    messages.append(Message("user", [*visuals, text]))
    return messages


def continuation(text: str) -> str:
    """What follows a generated answer (fed without its stop token) to ask a follow-up question."""
    return f"{IM_END}\n" + render_chat([Message("user", text)], add_generation_prompt=True, default_system=False)


def expand_pads(ids: Sequence[int], pad_ids: Sequence[int], counts: Sequence[int]) -> np.ndarray:
    """Repeat the k-th pad token (any id in `pad_ids`, in order) counts[k] times; int64 ids."""
    ids = np.asarray(ids, dtype=np.int64)
    where = np.flatnonzero(np.isin(ids, np.asarray(pad_ids, dtype=np.int64)))
    if len(where) != len(counts):
        raise ModelError(
            f"the prompt has {len(where)} visual placeholders for {len(counts)} images/videos: "
            "prompt text must not contain Qwen's special tokens (<|image_pad|>, <|video_pad|>, ...)"
        )
    repeats = np.ones(len(ids), dtype=np.int64)
    repeats[where] = np.asarray(counts, dtype=np.int64)
    return np.repeat(ids, repeats)
