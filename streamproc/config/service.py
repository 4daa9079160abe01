"""Config of the running service: queues, workers, shutdown. Its HTTP port is `http:` (config/http.py)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Section


class ServiceConfig(Section):
    queue_size: int = Field(4, ge=1, description="segments waiting per source")
    live_drop_policy: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    workers: int = Field(1, ge=1, le=64, description="model workers for the hf backend (tpu: backend.engines)")
    rule_max_new_tokens: int = Field(48, ge=8, description="answer length for alert-rule questions")
    stats_interval_s: float = Field(60.0, gt=0)
    shutdown_timeout_s: float = Field(30.0, gt=0, description="how long a stop may take to flush events")
    stuck_after_s: float = Field(600.0, gt=0, description="a model call running this long makes /healthz fail")
