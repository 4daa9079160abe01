"""The root of the config tree."""
from __future__ import annotations

from typing import Optional

from pydantic import Field, model_validator

from .base import Section
from .gate import GateConfig
from .http import HttpConfig, migrate_aliases
from .cluster import ClusterConfig
from .ingest import SamplingConfig, SegmentingConfig, SourceConfig
from .model import BackendConfig, GenerationConfig, PromptConfig
from .rules import RuleConfig
from .service import ServiceConfig
from .sinks import SinksConfig
from .store import StoreConfig, SummaryConfig, check_summaries
from .web import WebConfig


class Config(Section):
    sources: list[SourceConfig] = Field(default_factory=list)
    sampling: SamplingConfig = SamplingConfig()
    segmenting: SegmentingConfig = SegmentingConfig()
    backend: Optional[BackendConfig] = None
    prompt: PromptConfig = PromptConfig()
    generation: GenerationConfig = GenerationConfig()
    rules: list[RuleConfig] = Field(default_factory=list)
    sinks: SinksConfig = SinksConfig()
    service: ServiceConfig = ServiceConfig()
    gate: GateConfig = GateConfig()  # the scene-change gate (docs/gate.md)
    cluster: Optional[ClusterConfig] = None  # several boxes over NATS JetStream (docs/scale-out.md)
    store: StoreConfig = StoreConfig()
    summaries: list[SummaryConfig] = Field(default_factory=list)
    web: WebConfig = WebConfig()
    http: HttpConfig = HttpConfig()  # the service's HTTP port: address, API keys, limits (docs/security.md)

    @model_validator(mode="before")
    @classmethod
    def _deprecated_keys(cls, data: object) -> object:
        return migrate_aliases(data)  # service.metrics.host/port/enabled and web.api_key -> http

    @model_validator(mode="after")
    def _cross_checks(self) -> "Config":
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique: {', '.join(duplicates)} given twice")
        rule_names = [r.name for r in self.rules]
        duplicates = sorted({n for n in rule_names if rule_names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique: {', '.join(duplicates)} given twice")
        known = set(names)
        for rule in self.rules:
            unknown = [s for s in rule.sources if s not in known]
            if unknown:
                raise ValueError(f"rule {rule.name} names unknown sources: {', '.join(unknown)}")
        check_summaries(self.summaries, self.store, known)
        if self.web.control and self.http.enabled and not self.http.keys():
            raise ValueError("web.control needs http.api_key: pausing cameras from a page must take a key")
        return self
