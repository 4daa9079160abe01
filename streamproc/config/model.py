"""Config of the model backend, the prompt and generation."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from .base import Section
from .openai import OpenAIBackendConfig

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
DEFAULT_USER_PROMPT = "Describe what happens in this video in one or two sentences."


class HfBackendConfig(Section):
    """transformers reference backend (CPU or CUDA)."""

    type: Literal["hf"] = "hf"
    model: str = Field(description="checkpoint folder or hub id, e.g. Qwen/Qwen2.5-VL-3B-Instruct")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: Optional[str] = None


class TpuBackendConfig(Section):
    """The native engine over a Qwen2.5-VL bmodel on a Sophgo TPU (or the CPU simulator)."""

    type: Literal["tpu"] = "tpu"
    bmodel: Path
    tokenizer: Path = Field(description="folder with tokenizer.json (and the chat template)")
    runtime_dir: Optional[Path] = Field(
        None, description="folder with libbmrt.so; default: $STREAMPROC_BMRT_DIR, the loader path, the SDK"
    )
    device_id: int = Field(0, ge=0)
    engines: int = Field(1, ge=1, le=64, description="engines over the one loaded bmodel (streams in flight)")


BackendConfig = Annotated[
    Union[HfBackendConfig, TpuBackendConfig, OpenAIBackendConfig], Field(discriminator="type")
]


class PromptConfig(Section):
    system: Union[Literal[False], str, None] = Field(
        None,
        description="the system turn; unset: what the model's chat template adds by itself (Qwen's: "
        f"{DEFAULT_SYSTEM_PROMPT!r}); false: no system turn",
    )
    user: str = Field(DEFAULT_USER_PROMPT, min_length=1, description="default question for every segment")


class GenerationConfig(Section):
    max_new_tokens: int = Field(64, ge=1, le=8192)
    do_sample: bool = False
    temperature: float = Field(0.7, gt=0, le=10)
    top_p: float = Field(0.8, gt=0, le=1)
    top_k: int = Field(50, ge=1)
    repetition_penalty: float = Field(1.0, gt=0)
    seed: Optional[int] = None
