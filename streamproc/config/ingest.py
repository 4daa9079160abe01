"""Config of sources, sampling and segmenting."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..redact import url_scheme
from .base import Section, parse_pixels, safe_name
from .gate import SourceGateConfig

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
# The FFmpeg protocols a camera or stream comes over, and file:// for a local file. Checked when
# the config is read: a mistyped scheme (rstp://) is a config error at once (exit 2), not a
# source error after the model has loaded.
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "rtmpt", "http", "https", "udp", "tcp", "rtp", "srt", "file")


class ReconnectConfig(Section):
    """Capped exponential backoff between reconnect attempts of a live source."""

    initial_delay_s: float = Field(1.0, gt=0)
    max_delay_s: float = Field(30.0, gt=0)
    multiplier: float = Field(2.0, ge=1.0)
    max_attempts: Optional[int] = Field(None, ge=1, description="give up after this many; null = never")


class SourceConfig(Section):
    """One camera or file."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    url: Optional[str] = None
    path: Optional[Path] = None
    prompt: Optional[str] = Field(None, description="overrides prompt.user for this source")
    enabled: bool = True
    live: Optional[bool] = Field(None, description="default: true for network URLs, false for files")
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    open_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(10.0, gt=0)
    reconnect: ReconnectConfig = ReconnectConfig()
    decoder_threads: int = Field(0, ge=0, description="0 = let FFmpeg choose")
    realtime: bool = Field(False, description="read a file at its own pace, like a camera (demos, soak tests)")
    speed: float = Field(1.0, gt=0, le=1000, description="with realtime: read at this many times the file's pace (time-scaled benches)")
    gate: SourceGateConfig = SourceGateConfig()  # `always` and ignore regions for the scene-change gate

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: Optional[str]) -> Optional[str]:
        # The message names the scheme only: the rest of the URL may hold a password.
        scheme = url_scheme(value) if value is not None else None
        if scheme is not None and scheme not in URL_SCHEMES:
            # the same letters in another order first (rstp -> rtsp), then the closest spelling
            close = [s for s in URL_SCHEMES if sorted(s) == sorted(scheme)] or difflib.get_close_matches(scheme, URL_SCHEMES, n=1)
            hint = f"did you mean {close[0]}://? " if close else ""
            raise ValueError(
                f"unknown URL scheme '{scheme}://' ({hint}streamproc reads {', '.join(URL_SCHEMES)} URLs; "
                "a file is given as path:)"
            )
        return value
    @field_validator("name", mode="before")
    @classmethod
    def _safe_name(cls, value: object) -> object:
        return safe_name(value, "source") if isinstance(value, str) else value

    @field_validator("path", mode="before")
    @classmethod
    def _not_a_url(cls, value: object) -> object:
        # A location with :// is never a file path (Path would fold it to "scheme:/..."); the value
        # may hold a password, so the message does not repeat it.
        if isinstance(value, str) and "://" in value:
            raise ValueError("a location with :// is a URL, not a file path: give it as url:")
        return value

    @field_validator("path", mode="after")
    @classmethod
    def _expand_home(cls, value: Optional[Path]) -> Optional[Path]:
        return value.expanduser() if value is not None else None

    @model_validator(mode="after")
    def _one_location(self) -> "SourceConfig":
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of url or path")
        if self.live is None:
            self.live = self.url is not None and self.url.lower().startswith(LIVE_SCHEMES)
        return self

    @property
    def location(self) -> str:
        return self.url if self.url is not None else str(self.path)


class SamplingConfig(Section):
    fps: float = Field(1.0, gt=0, le=30)
    max_pixels: int = Field(
        672 * 896,
        description="the model's max_pixels, e.g. 672x896; unset: the model's own (a bmodel's ViT size), 672x896 at most",
    )
    min_pixels: int = Field(4 * 28 * 28, description="smallest frame; unset: the model's, at least 4 tokens")
    video_area_factor: float = Field(0.25, gt=0, le=1, description="frames use this share of max_pixels")
    token_pixels: int = Field(
        28, ge=1, description="pixels a visual token spans on a side; set from the model (28 Qwen2.5-VL, 32 Qwen3-VL)"
    )
    # area: antialiased downscaling at 1.1 ms per 1080p frame; bicubic (what Qwen's processor uses)
    # costs 5.5 ms, enough to miss the ingest budget, for no visible gain at 1/4-1/16 scale.
    interpolation: Literal["area", "bicubic", "bilinear", "fast_bilinear"] = "area"

    @field_validator("max_pixels", "min_pixels", mode="before")
    @classmethod
    def _pixels(cls, value: object) -> object:
        return parse_pixels(value)

    @model_validator(mode="after")
    def _check_pixels(self) -> "SamplingConfig":
        if self.min_pixels < 28 * 28:
            raise ValueError("min_pixels must be at least 784 (one 28x28 token)")
        # Only when both are the user's: an unset min_pixels follows the model (backends.geometry).
        if "min_pixels" in self.model_fields_set and self.video_pixels < self.min_pixels:
            raise ValueError(
                f"max_pixels x video_area_factor = {self.video_pixels} is below min_pixels {self.min_pixels}"
            )
        return self

    @property
    def video_pixels(self) -> int:
        return int(self.max_pixels * self.video_area_factor)


class SegmentingConfig(Section):
    """Segments are sized so visual tokens + prompt + answer fit the model's sequence length."""

    seq_length: Optional[int] = Field(
        None, ge=64, description="model context; default: read from backend.bmodel, else 2048"
    )
    bmodel: Optional[Path] = Field(None, description="read seq_length from this bmodel")
    prompt_reserve: int = Field(
        64, ge=0, description="at least this many tokens for the chat template and prompt (measured when a model is loaded)"
    )
    pair_text_tokens: int = Field(
        0, ge=0, description="text tokens the model adds per frame pair (Qwen3-VL's timestamps); set from the model"
    )
    answer_reserve: int = Field(64, ge=1, description="tokens kept for the answer")
    overlap_s: float = Field(0.0, ge=0)
    max_duration_s: Optional[float] = Field(None, gt=0, description="cap on a segment's length")

    @model_validator(mode="after")
    def _one_length(self) -> "SegmentingConfig":
        if self.seq_length is not None and self.bmodel is not None:
            raise ValueError("give seq_length or bmodel, not both")
        return self
