"""Qwen's chat template, in Python, and the expansion of visual pad tokens.

Qwen2.5-VL and Qwen3-VL share the template's form; they differ in whether it adds a default
system turn (the folder's template says: template_default_system) and in how a video is written
(the family's media text; Qwen2.5-VL's is shown here).

The published template (chat_template.json of Qwen/Qwen2.5-VL-*-Instruct) renders:

    <|im_start|>system\\n{system}<|im_end|>\\n            (a default system turn when the first
    <|im_start|>user\\n{parts}<|im_end|>\\n                 message is not a system one; other
                                                        templates may add none: see
                                                        template_default_system)
    <|im_start|>assistant\\n                                (the generation prompt)

where an image part is <|vision_start|><|image_pad|><|vision_end|> and a video part the same
with <|video_pad|>; text parts are written as they are, with nothing between parts. Each single
pad token is then repeated once per merged visual token. Rendering to text and tokenising
once, then expanding pads in the id array, gives the same ids as transformers (which expands in
the text): special tokens split the text either way, so the text between them tokenises alike.
"""
from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

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

    def render(self, media: Optional[Iterator[str]] = None) -> str:
        """The turn's text; `media` gives the text of each Vision part in turn (a model family's
        own, e.g. Qwen3-VL's per-frame timestamps), else the plain vision block."""
        if isinstance(self.content, str):
            body = self.content
        else:
            body = "".join(
                (next(media) if media is not None else part.text) if isinstance(part, Vision) else part
                for part in self.content
            )
        return f"{IM_START}{self.role}\n{body}{IM_END}\n"


def render_chat(
    messages: Sequence[Message],
    add_generation_prompt: bool = True,
    default_system: Union[bool, str, None] = True,
    media: Optional[Sequence[str]] = None,
) -> str:
    """The template's text. `default_system` is the system turn the template adds when the first
    message is not a system one: True for Qwen2.5-VL's published default, a string for a
    template's own, False or None for a template that adds none (and for continuations).
    `media`: the text of each Vision part, in order (default: one plain vision block each)."""
    if default_system is True:
        default_system = DEFAULT_SYSTEM_PROMPT
    parts = []
    if default_system and messages and messages[0].role != "system":
        parts.append(Message("system", default_system).render())
    texts = iter(media) if media is not None else None
    parts.extend(message.render(texts) for message in messages)
    if add_generation_prompt:
        parts.append(f"{IM_START}assistant\n")
    return "".join(parts)


# How a system prompt is chosen (config prompt.system, `chat --system/--no-system`):
TEMPLATE_DEFAULT = None  # what the tokenizer folder's chat template adds by itself, if anything
NO_SYSTEM = False  # no system turn at all
SystemPrompt = Union[str, None, bool]


def conversation(text: str, visuals: Sequence[Vision] = (), system: SystemPrompt = TEMPLATE_DEFAULT) -> list[Message]:
    """A system turn when `system` is a string (else none here: the renderer adds the
    template's default for TEMPLATE_DEFAULT), and one user turn: visuals first, then text."""
    messages = [Message("system", system)] if isinstance(system, str) else []
    messages.append(Message("user", [*visuals, text]))
    return messages


_TEMPLATE_FILES = ("chat_template.json", "chat_template.jinja", "tokenizer_config.json")
# A literal system turn in a template: what it adds when the conversation has none.
_LITERAL_SYSTEM = re.compile(re.escape(IM_START) + r"system\n([^{}]*?)" + re.escape(IM_END))
_JOINED = re.compile(r"['\"]\s*[+~]")  # a string literal joined to an expression


def chat_template(folder: Union[str, Path]) -> Optional[str]:
    """The chat template of a tokenizer or checkpoint folder, as transformers finds it."""
    folder = Path(folder)
    for name in _TEMPLATE_FILES:
        path = folder / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if name.endswith(".jinja"):
            return text
        try:
            template = json.loads(text).get("chat_template")
        except (ValueError, AttributeError):
            continue
        if isinstance(template, list):  # named templates: the default one
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        if isinstance(template, str):
            return template
    return None


def template_default_system(folder: Union[str, Path], fallback: Optional[str] = DEFAULT_SYSTEM_PROMPT) -> Optional[str]:
    """The system prompt the folder's chat template adds when a conversation has none: the
    literal system turn written in the template, None when it writes none. A folder without a
    template gets `fallback`: what the family's published template adds (Qwen2.5-VL's: "You are
    a helpful assistant."; Qwen3-VL's: none)."""
    template = chat_template(folder)
    if template is None:
        return fallback
    for found in _LITERAL_SYSTEM.finditer(template):
        if not _JOINED.search(found.group(1)):  # '...system\n' + content + '...': the user's own
            return found.group(1)
    return None


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
