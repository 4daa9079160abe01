"""The known model families and how a checkpoint or a bmodel is matched to one.

A checkpoint says its family in config.json (`model_type`); a bmodel in its `vit` net (Qwen2.5-VL's
takes window masks and a reverse index, Qwen3-VL's takes position-grid taps and has one output per
DeepStack layer besides the merger). A folder without config.json (a tokenizer folder beside a
bmodel) is taken as Qwen2.5-VL, the family streamproc started with, unless the bmodel says otherwise.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..errors import ModelError
from .family import Family, ModelFamily
from .qwen2_5 import QWEN2_5_VL
from .qwen3 import QWEN3_VL

FAMILIES: tuple[ModelFamily, ...] = (QWEN2_5_VL, QWEN3_VL)
DEFAULT = QWEN2_5_VL


def get_family(family: "Family | str") -> ModelFamily:
    """The family by enum or name ("qwen2.5-vl", "qwen3-vl"); ModelError for another name."""
    try:
        wanted = family if isinstance(family, Family) else Family(family)
    except ValueError:
        raise ModelError(f"unknown model family {family!r} (known: {', '.join(family_names())})") from None
    return next(f for f in FAMILIES if f.family is wanted)


def family_names() -> list[str]:
    return [f.family.value for f in FAMILIES]


def family_of_config(config: Mapping[str, Any], where: str = "the checkpoint") -> ModelFamily:
    """The family of a checkpoint's config.json (its model_type); the default for no config."""
    if not config:
        return DEFAULT
    model_type = config.get("model_type")
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    known = ", ".join(f"{f.label} ({'/'.join(f.model_types)})" for f in FAMILIES)
    raise ModelError(f"{where} holds a {model_type!r} model; streamproc runs {known}")


def family_of_nets(vit_inputs: Sequence[tuple[int, ...]], vit_outputs: int, where: str = "the bmodel") -> ModelFamily:
    """The family of a bmodel from its vit net's input shapes and output count."""
    for family in FAMILIES:
        if family.owns_vit(vit_inputs, vit_outputs):
            return family
    shapes = ", ".join("x".join(str(d) for d in s) for s in vit_inputs)
    raise ModelError(f"{where}: its vit net (inputs {shapes}) is not the ViT of {' or '.join(f.label for f in FAMILIES)}")
