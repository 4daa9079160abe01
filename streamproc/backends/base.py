"""The backend interface, its value types, and the registry of backend plug-ins.

A backend turns prepared model inputs (`streamproc.qwen.ModelInputs`, built once by the
backend-neutral model-input module) into text. Backends are registered by name with the dotted
path of their class, so heavy imports (torch, the native engine) happen only when one is created.
A backend class states what its model takes before loading it with a static `geometry(config)`
returning a `streamproc.backends.geometry.ModelGeometry` (read from files; no weights).

Thread safety: one backend instance serves one request at a time unless its class says otherwise;
the service gives each worker its own instance or serialises calls.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, runtime_checkable

from ..errors import ModelError

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
    finish_reason: str = "stop"  # stop (a stop token) | length (max_new_tokens)
    timings: Timings = field(default_factory=Timings)
    token_ids: tuple[int, ...] = ()

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.timings.decode_s if self.timings.decode_s > 0 else 0.0


@runtime_checkable
class Backend(Protocol):
    """What the pipeline needs from a model backend."""

    name: str
    model_id: str

    @property
    def seq_length(self) -> Optional[int]:
        """The model's context limit in tokens, if it has a hard one (bmodels do)."""

    @property
    def inputs(self) -> Any:
        """The model-input builder for this model (a streamproc.qwen builder)."""

    def describe(self, inputs: Any, params: GenerationParams) -> Result:
        """Run one request and return its text, token counts and timings."""

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
        target = getattr(module, attribute)
    return target


def create_backend(config: Any, **kwargs: Any) -> Backend:
    """Create the backend that `config` (a backend config section) names by its `type`."""
    return backend_class(config.type)(config, **kwargs)
