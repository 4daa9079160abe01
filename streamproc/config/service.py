"""Config of the running service: queues, workers, shutdown, the urgency policy. Its HTTP port is
`http:` (config/http.py)."""
from __future__ import annotations

from dataclasses import replace
from typing import Literal, Optional

from pydantic import Field

from ..urgency import PRESETS, Order, Policy, Preset, RulesMode
from .base import Section


class PolicyConfig(Section):
    """How segments are cut, ordered and merged, and how rules are asked (streamproc/urgency.py).
    A preset, and any of its values overridden; unset values come from the preset."""

    preset: Literal["urgent", "old"] = Field(
        "urgent", description="urgent: joint call, onset cuts, coalescing, urgency order; old: the service before issue 22"
    )
    rules_call: Optional[Literal["joint", "followup", "auto"]] = Field(
        None, description="joint: the caption and every rule in one call; followup: a turn per rule; "
        "auto: followup on a backend that keeps its KV history, else joint"
    )
    caption_tokens: Optional[int] = Field(
        None, ge=8, le=1024, description="the caption's token budget (asked for in the prompt), within generation.max_new_tokens"
    )
    verdicts_first: Optional[bool] = Field(None, description="verdict lines before the caption; alerts go out as they stream")
    onset_s: Optional[float] = Field(None, gt=0, description="close a segment this long after change starts in a quiet camera")
    quiet_s: Optional[float] = Field(None, gt=0, description="quiet: no frame-to-frame change for this long")
    hold_s: Optional[float] = Field(None, gt=0, description="a segment holds a change at most this long")
    fixed_segments: Optional[bool] = Field(None, description="true: no onset or hold cuts")
    coalesce: Optional[bool] = Field(None, description="a live camera's waiting segments become one call, frames thinned")
    order: Optional[Literal["urgency", "round_robin"]] = Field(None, description="which camera the model takes next")
    busy_caption_tokens: Optional[int] = Field(
        None, ge=4, le=1024, description="the caption budget of a call taken while other cameras have work waiting"
    )
    busy_frames: Optional[int] = Field(None, ge=2, le=1024, description="such a call's frames are thinned to this many")
    yield_tokens: Optional[int] = Field(
        None, ge=1, le=1024, description="an onset waiting in another camera ends a call's caption within this many "
        "tokens once its verdicts are out"
    )
    contention: Optional[bool] = Field(
        None, description="false: no shorter captions, thinner calls or early caption ends while others wait"
    )

    def resolve(self) -> Policy:
        policy = PRESETS[Preset(self.preset)]
        changes: dict = {}
        if self.rules_call is not None:
            changes["rules_mode"] = RulesMode(self.rules_call)
        if self.order is not None:
            changes["order"] = Order(self.order)
        if self.contention is False:
            changes.update(busy_caption_tokens=None, busy_frames=None, yield_tokens=None)
        for name in ("caption_tokens", "verdicts_first", "quiet_s", "coalesce", "busy_caption_tokens", "busy_frames",
                     "yield_tokens"):
            if getattr(self, name) is not None:
                changes[name] = getattr(self, name)
        if self.fixed_segments:
            changes["onset_s"], changes["hold_s"] = None, None
        else:
            for name in ("onset_s", "hold_s"):
                if getattr(self, name) is not None:
                    changes[name] = getattr(self, name)
            if "onset_s" not in changes and policy.onset_s is None and self.fixed_segments is False:
                changes["onset_s"], changes["hold_s"] = PRESETS[Preset.URGENT].onset_s, PRESETS[Preset.URGENT].hold_s
        return replace(policy, **changes)


class ServiceConfig(Section):
    queue_size: int = Field(4, ge=1, description="segments waiting per source (a coalescing lane never drops)")
    live_drop_policy: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    workers: int = Field(1, ge=1, le=64, description="model workers for the hf backend (tpu: backend.engines)")
    rule_max_new_tokens: int = Field(48, ge=8, description="answer length for alert-rule follow-up questions")
    stats_interval_s: float = Field(60.0, gt=0)
    shutdown_timeout_s: float = Field(30.0, gt=0, description="how long a stop may take to flush events")
    stuck_after_s: float = Field(600.0, gt=0, description="a model call running this long makes /healthz fail")
    policy: PolicyConfig = PolicyConfig()  # the urgency policy (docs/gate.md, streamproc/urgency.py)
