"""Config of the `openai` backend: any OpenAI-compatible chat-completions server (vLLM, Ollama,
llama.cpp's server, another box running `streamproc serve`)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator

from .base import Section, parse_pixels


class OpenAIBackendConfig(Section):
    """Frames go out as JPEG images with the prompt; the server's `usage` gives the token counts."""

    type: Literal["openai"] = "openai"
    base_url: str = Field(description="the API root, e.g. http://gpu-box:8000/v1 (vLLM) or http://host:11434/v1 (Ollama)")
    model: str = Field(min_length=1, description="the model id the server knows, e.g. Qwen/Qwen2.5-VL-7B-Instruct")
    api_key_env: Optional[str] = Field(
        None, description="name of the environment variable holding the API key (the key itself never goes in the config)"
    )
    connect_timeout_s: float = Field(10.0, gt=0)
    timeout_s: float = Field(120.0, gt=0, description="seconds to wait for one answer")
    max_retries: int = Field(3, ge=0, le=20, description="retries of a 429, 5xx or connection failure")
    retry_initial_s: float = Field(0.5, gt=0, description="first back-off; doubles per retry, Retry-After wins")
    retry_max_s: float = Field(30.0, gt=0)
    seq_length: int = Field(
        8192, ge=256, description="the token budget segments are sized for (prompt, frames, answer); at most the "
        "server's context. Frames go as separate images, which Qwen2.5-VL counts at twice the video rate: "
        "about half the server's context is a safe value"
    )
    max_images: Optional[int] = Field(
        None, ge=1, description="most frames sent per segment (evenly spaced); servers limit images per prompt "
        "(vLLM: --limit-mm-per-prompt)"
    )
    max_pixels: int = Field(672 * 896, description="largest image the model takes (sampling.max_pixels fits it)")
    jpeg_quality: int = Field(5, ge=2, le=31, description="JPEG q scale: 2 best .. 31 smallest")
    tokenizer: Optional[Path] = Field(
        None, description="a tokenizer folder for exact prompt token counts; without it they are estimated"
    )

    @field_validator("max_pixels", mode="before")
    @classmethod
    def _pixels(cls, value: object) -> object:
        return parse_pixels(value)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")
