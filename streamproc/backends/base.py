"""The backend interface, its value types, and the registry of backend plug-ins.

A backend turns prepared model inputs (`streamproc.qwen.ModelInputs`, built once by the
backend-neutral model-input module) into text. Backends are registered by name with the dotted
path of their class, so heavy imports (torch, the native engine) happen only when one is created.

Before loading anything, a backend class states from its config alone (files, no weights):
- `geometry(config)`: the `ModelGeometry` (sizes the model takes);
- `input_builder(config)`: the model-input builder (to count prompt tokens before a model loads).
A loaded backend declares what it can do in one `BackendCapabilities` value (`capabilities`):
callers read it, they never probe a backend for methods or attributes.

Thread safety: one backend instance serves one request at a time unless its class says otherwise;
the service gives each worker its own instance or serialises calls.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, runtime_checkable

from ..errors import ModelError
from ..qwen.family import Family

if TYPE_CHECKING:  # pragma: no cover
    from ..config.model import GenerationConfig


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 50
    repetition_penalty: float = 1.0
    seed: Optional[int] = None

    @classmethod
    def from_config(cls, config: "GenerationConfig") -> "GenerationParams":
        return cls(**config.model_dump())


@dataclass
class Timings:
    """Seconds spent per phase of one request (0 where a backend has no such phase)."""

    preprocess_s: float = 0.0
    vision_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    total_s: float = 0.0

    @property
    def first_token_s(self) -> float:
        return self.preprocess_s + self.vision_s + self.prefill_s

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in self.__dict__.items()}


@dataclass
class Result:
    text: str
    prompt_tokens: int  # all input tokens, visual ones included
    visual_tokens: int
    generated_tokens: int
    model: str
    finish_reason: str = "stop"  # stop (a stop token) | length (max_new_tokens) | ended (on_token ended it)
    timings: Timings = field(default_factory=Timings)
    token_ids: tuple[int, ...] = ()

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.timings.decode_s if self.timings.decode_s > 0 else 0.0


DEFAULT_SEQ_LENGTH = 2048  # segments for a model without a hard context limit


@dataclass(frozen=True)
class ModelGeometry:
    """Sizes a model takes, known before its weights load. Pixel limits are per image, and per
    video frame (one ViT call)."""

    model: str  # a name for messages: the bmodel file or the checkpoint folder
    seq_length: Optional[int]  # hard context limit in tokens (bmodels); None: none
    max_context: Optional[int]  # the checkpoint's max_position_embeddings, if it says
    max_input: Optional[int]  # longest single prefill call in tokens; None: the whole context
    image_min_pixels: int
    image_max_pixels: int
    video_min_pixels: int
    video_max_pixels: int
    keeps_history: bool  # the KV cache survives a turn, so follow-ups prefill only new tokens
    factor: int = 28  # pixels per merged token on a side (28 Qwen2.5-VL, 32 Qwen3-VL)
    patch_size: int = 14
    layout: Optional[str] = None  # bmodel prefill layout: static, dynamic, history, history-old
    chip: Optional[str] = None
    family: Optional[Family] = Family.QWEN2_5_VL  # None: not known (a remote model)
    pair_text_tokens: int = 0  # text tokens a video adds per frame pair (Qwen3-VL's timestamps)
    # An input longer than max_input runs as several prefill launches (history layouts); else
    # the whole prompt, frames included, must fit max_input.
    chunked_prefill: bool = True

    @property
    def context(self) -> int:
        """The context segments are sized for by default."""
        if self.seq_length:
            return self.seq_length
        return min(DEFAULT_SEQ_LENGTH, self.max_context) if self.max_context else DEFAULT_SEQ_LENGTH

    @property
    def context_limit(self) -> Optional[int]:
        """The longest context a user may ask for (None: no limit known)."""
        return self.seq_length or self.max_context

    def input_limit(self, answer_reserve: int) -> Optional[int]:
        """The context a segment may fill when its whole input must fit one prefill launch
        (max_input plus the answer, within seq_length); None when any input length works."""
        if self.chunked_prefill or not self.max_input or not self.seq_length or self.max_input >= self.seq_length:
            return None
        return min(self.seq_length, self.max_input + answer_reserve)

    def describe(self) -> str:
        seq = f"seq {self.seq_length}" if self.seq_length else f"context {self.context_limit or 'unlimited'}"
        family = f"{self.family.label}, " if self.family else ""
        return (
            f"{family}{seq}, images {side(self.image_min_pixels, self.factor)}..{side(self.image_max_pixels, self.factor)}"
            f" px, video frames {side(self.video_min_pixels, self.factor)}..{side(self.video_max_pixels, self.factor)} px"
            + (f", prefill {self.max_input} tokens a call" if self.max_input else "")
            + (", keeps history" if self.keeps_history else "")
        )


def side(pixels: int, factor: int = 28) -> str:
    """A pixel count as the squarest HEIGHTxWIDTH of factor-multiples (height <= width), when one
    exists; else the count."""
    best = None
    for height in range(factor, int(pixels**0.5) + 1, factor):
        if pixels % height == 0 and (pixels // height) % factor == 0:
            best = (height, pixels // height)
    return f"{best[0]}x{best[1]}" if best else str(pixels)


@dataclass(frozen=True)
class BackendCapabilities:
    """What a loaded backend can do. Declared by the backend (`backend.capabilities`), read by the
    pipeline, the describer, the CLI and the API server instead of probing for methods."""

    family: Optional[Family]  # the model family (None: unknown, e.g. a remote model)
    seq_length: Optional[int]  # hard context limit in tokens (None: none)
    keeps_history: bool  # follow_up prefills only the new turn: the KV cache of the last one is kept
    follow_up: bool  # answers further turns (inputs from the builder's follow_up); False: one-shot requests only
    sampling: bool  # do_sample=True is honoured (a bmodel needs --do_sample heads)
    # describe/follow_up take on_token=callable and call it per generated token; a true return
    # ends the answer after that token (the result so far, finish_reason "ended")
    streaming: bool
    geometry: Optional[ModelGeometry] = None  # sizes the model takes (None: not stated)


@runtime_checkable
class Backend(Protocol):
    """What the pipeline needs from a model backend."""

    name: str
    model_id: str

    @staticmethod
    def geometry(config: Any) -> Optional[ModelGeometry]:
        """What the model takes, from its files alone (None: the config says nothing)."""

    @staticmethod
    def input_builder(config: Any) -> Any:
        """The model-input builder, from the config's files alone (no weights)."""

    @property
    def capabilities(self) -> BackendCapabilities:
        """What this backend can do (see BackendCapabilities)."""

    @property
    def seq_length(self) -> Optional[int]:
        """The model's context limit in tokens, if it has a hard one (bmodels do)."""

    @property
    def inputs(self) -> Any:
        """The model-input builder for this model (a streamproc.qwen builder)."""

    def describe(self, inputs: Any, params: GenerationParams) -> Result:
        """Run one request and return its text, token counts and timings."""

    def follow_up(self, inputs: Any, params: GenerationParams) -> Result:
        """A further turn (inputs from the builder's follow_up): only its new tokens are prefilled
        when capabilities.keeps_history, else the whole conversation runs again."""

    def abort(self) -> None:
        """Stop the request in progress, if any, from any thread; returns at once. That request
        raises streamproc.errors.Aborted soon after (between decode steps, prefill or ViT chunks);
        with no request in progress it does nothing. The backend stays usable."""

    def close(self) -> None:
        """Free the model and device resources."""


_REGISTRY: dict[str, str] = {
    "hf": "streamproc.backends.hf:HfBackend",
    "tpu": "streamproc.backends.tpu:TpuBackend",
    "openai": "streamproc.backends.openai:OpenAIBackend",
}


def register_backend(name: str, target: str | Callable[..., Backend]) -> None:
    """Register a backend class (or factory) by name; `target` may be 'module:Class'."""
    _REGISTRY[name] = target  # type: ignore[assignment]


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def backend_class(name: str) -> Callable[..., Backend]:
    try:
        target: Any = _REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown backend {name!r} (known: {', '.join(available_backends())})") from None
    if isinstance(target, str):
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelError(
                f"backend {name!r} cannot be loaded: {exc.name or exc} is not installed"
                + (" (pip install 'streamproc[hf]')" if name == "hf" else "")
            ) from None
        try:
            target = vars(module)[attribute]
        except KeyError:
            raise ModelError(f"backend {name!r}: {module_name} has no {attribute}") from None
    return target


def create_backend(config: Any, **kwargs: Any) -> Backend:
    """Create the backend that `config` (a backend config section) names by its `type`."""
    return backend_class(config.type)(config, **kwargs)
