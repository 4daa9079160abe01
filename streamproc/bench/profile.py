"""Timing profiles for `bench capacity`: what one model call costs on a chip, one meaning per field.

A profile (profiles/*.json) gives each figure as {"value", "kind", "note"}; kind is `published`
(a vendor's figure, as published), `estimate` (derived from the nearest published figure; the
note says how) or `measured` (`bench capacity --bmodel`, from the engine's own timers):

  vit_s_per_768_tokens  the ViT, per 768 visual tokens (scales with the call's visual tokens)
  prefill_s             the language model's prefill of one call, WITHOUT the ViT and the host
                        work; for a static bmodel (prefill_static) the whole padded sequence,
                        whatever the prompt's length, else for `prefill_tokens` tokens (scaled)
  host_s                host work per call before the chip runs (image preprocessing, inputs)
  tokens_per_s          decoding rate
  followup_prefill_s    a follow-up question's prefill on a history bmodel (only the question's
                        tokens; the caption turn stays in the KV cache)

The seed's published "first token 3.79 s" for the 3B 2K bmodel already includes its ViT (1.13 s
for the 768 tokens of its test image) and host preprocessing (0.19 s): prefill_s is the rest,
2.47 s. (The earlier profile added the ViT on top of the whole first-token time: counted twice.)
"""
from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .policy import Policy, RulesMode

PROFILES = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = PROFILES / "bm1684x-3b-2k.json"
FIGURES = ("vit_s_per_768_tokens", "prefill_s", "host_s", "tokens_per_s", "followup_prefill_s")
KINDS = ("published", "estimate", "measured")


@dataclass(frozen=True)
class Figure:
    value: float
    kind: str
    note: str = ""


@dataclass(frozen=True)
class Profile:
    name: str
    chip: str
    model: str
    seq_length: int
    frame: tuple[int, int]  # height, width of sampled frames
    prefill_static: bool
    prefill_tokens: int
    history: bool  # follow-up turns reuse the KV cache
    vit_s_per_768_tokens: Figure
    prefill_s: Figure
    host_s: Figure
    tokens_per_s: Figure
    followup_prefill_s: Figure
    source: str = ""

    @classmethod
    def load(cls, path: Path) -> "Profile":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"{path}: unknown profile keys {', '.join(unknown)}")
        for name in FIGURES:
            figure = data[name]
            if figure.get("kind") not in KINDS:
                raise ValueError(f"{path}: {name}.kind must be one of {', '.join(KINDS)}")
            data[name] = Figure(float(figure["value"]), figure["kind"], figure.get("note", ""))
        data["frame"] = tuple(data["frame"])
        return cls(**data)

    @property
    def kind(self) -> str:
        """published if every figure is, measured if any is, else estimate."""
        kinds = {getattr(self, name).kind for name in FIGURES if name != "followup_prefill_s" or self.history}
        return "published" if kinds == {"published"} else "measured" if "measured" in kinds else "estimate"

    def vit(self, visual_tokens: int) -> float:
        return self.vit_s_per_768_tokens.value * visual_tokens / 768.0

    def prefill(self, tokens: int) -> float:
        if self.prefill_static:
            return self.prefill_s.value
        return self.prefill_s.value * tokens / self.prefill_tokens

    def decode(self, tokens: int) -> float:
        return tokens / self.tokens_per_s.value


@dataclass(frozen=True)
class CallCost:
    """Seconds of the chip for one described job, and when its caption and its verdicts are in."""

    total: float
    caption_at: float  # from the start of the job
    alert_at: float


def call_cost(profile: Profile, policy: Policy, rules: int, visual_tokens: int, prompt_tokens: int = 64,
              question_tokens: int = 24) -> CallCost:
    """One described job: the joint call, or the caption call and a follow-up per rule."""
    tokens = visual_tokens + prompt_tokens
    full = profile.host_s.value + profile.vit(visual_tokens)
    if policy.rules_mode is RulesMode.JOINT:
        prompt = tokens + rules * question_tokens
        before = full + profile.prefill(prompt)
        verdicts = profile.decode(rules * policy.verdict_tokens)
        total = before + verdicts + profile.decode(policy.caption_tokens)
        # verdict lines first: the alert goes out as soon as they are decoded (streamed)
        return CallCost(total, total, before + verdicts if policy.verdicts_first and rules else total)
    caption = full + profile.prefill(tokens) + profile.decode(policy.caption_tokens)
    if profile.history:
        followup = profile.followup_prefill_s.value + profile.decode(policy.verdict_tokens)
    else:  # the whole conversation again: host, ViT, prefill, then the verdict
        followup = full + profile.prefill(tokens + policy.caption_tokens + question_tokens) + profile.decode(
            policy.verdict_tokens)
    total = caption + rules * followup
    return CallCost(total, caption, total)


def describe(profile: Profile) -> str:
    parts = [f"{name} {getattr(profile, name).value:g} ({getattr(profile, name).kind})" for name in FIGURES
             if name != "followup_prefill_s" or profile.history]
    static = "static" if profile.prefill_static else f"dynamic, per {profile.prefill_tokens} tokens"
    return f"{profile.name} [{profile.kind}; prefill {static}; history {'yes' if profile.history else 'no'}]: " + ", ".join(parts)


def measure_profile(bmodel: Path, tokenizer: Path, runtime_dir: Optional[Path], cache: Path,
                    progress: Callable[[str], None] = print) -> Profile:
    """A profile measured on the hardware: the TPU backend describes segments of a generated clip
    (bench/engine.py) and the engine's own timers fill the SAME fields as a published profile:
    ViT per 768 visual tokens, prefill alone, host work, decode rate."""
    from . import engine

    report = engine.run(bmodel=bmodel, tokenizer=tokenizer, runtime_dir=runtime_dir, clip=None, cache=cache,
                        segments=3, segment_s=8.0, max_new_tokens=40, progress=progress)
    rows = report["rows"][1:] or report["rows"]  # the first call warms up
    info = report["info"]
    where = f"bench capacity --bmodel {Path(bmodel).name} on {report['runtime']}"

    def measured(value: float, note: str) -> Figure:
        return Figure(value, "measured", f"{note}; {where}")

    vit = statistics.fmean(r.device["vit"] / max(1, r.visual_tokens) * 768 for r in rows)
    prefill = statistics.fmean(r.device["prefill"] for r in rows)
    host = statistics.fmean(r.host_s for r in rows)
    rate = statistics.fmean(r.generated / r.device["decode"] for r in rows if r.device["decode"] > 0)
    history = bool(info.supports_history)
    size = rows[0].frame_size
    return Profile(
        name=f"{info.chip}, {Path(bmodel).name}, seq {info.seq_length} (measured)", chip=str(info.chip),
        model=Path(bmodel).stem, seq_length=int(info.seq_length), frame=(int(size[0]), int(size[1])),
        prefill_static=not info.prefill_dynamic, prefill_tokens=int(statistics.fmean(r.prompt_tokens for r in rows)),
        history=history,
        vit_s_per_768_tokens=measured(vit, "device time of the ViT nets"),
        prefill_s=measured(prefill, "device time of the prefill nets, without the ViT"),
        host_s=measured(host, "host time per request (build, prepare, copies, engine, binding, post)"),
        tokens_per_s=measured(rate, "generated tokens over the decode nets' device time"),
        followup_prefill_s=measured(prefill * 64 / max(1, int(info.seq_length)),
                                    "prefill scaled to a 64-token question (not measured separately)"),
        source=where,
    )
