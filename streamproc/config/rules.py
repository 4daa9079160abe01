"""Config of alert rules: yes/no questions asked of the model, and keyword/regex rules on captions."""
from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from .base import Section, safe_name


class RuleConfig(Section):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    question: Optional[str] = Field(None, min_length=3, description="a yes/no question asked of the model per segment")
    keywords: list[str] = Field(default_factory=list, description="any of these words in the caption")
    pattern: Optional[str] = Field(None, description="a regular expression searched in the caption")
    ignore_case: bool = Field(True, description="keywords and pattern match regardless of case")
    sources: list[str] = Field(default_factory=list, description="sources it applies to; empty = all")
    raise_after: int = Field(1, ge=1, description="positive segments in a row to raise")
    clear_after: int = Field(2, ge=1, description="negative segments in a row to clear")
    cooldown_s: float = Field(0.0, ge=0, description="after clearing, do not raise again for this long")
    device_class: Optional[str] = Field(
        None, pattern=r"^[a-z_]+$", description="Home Assistant binary_sensor device class, e.g. motion, safety"
    )

    @field_validator("name", mode="before")
    @classmethod
    def _safe_name(cls, value: object) -> object:
        return safe_name(value, "rule") if isinstance(value, str) else value

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("keywords")
    @classmethod
    def _no_blank_keywords(cls, value: list[str]) -> list[str]:
        cleaned = [" ".join(k.split()) for k in value]
        if any(not k for k in cleaned):
            raise ValueError("keywords must not be blank")
        return cleaned

    @model_validator(mode="after")
    def _one_kind(self) -> "RuleConfig":
        kinds = [self.question is not None, bool(self.keywords), self.pattern is not None]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of question, keywords or pattern")
        return self

    @property
    def asks_model(self) -> bool:
        return self.question is not None

    @property
    def kind(self) -> Literal["question", "keywords", "pattern"]:
        if self.question is not None:
            return "question"
        return "keywords" if self.keywords else "pattern"

    def applies_to(self, source: str) -> bool:
        return not self.sources or source in self.sources
