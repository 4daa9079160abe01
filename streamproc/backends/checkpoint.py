"""A transformers checkpoint folder: where it is (a local folder or the Hugging Face cache) and
whether it is one streamproc runs, checked from its files before torch is imported.

Used by the transformers backend (to load it) and by the geometry rules (to size segments before
any weight loads), so neither needs the other.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..qwen.families import family_of_config
from ..qwen.family import ModelFamily

REQUIRED_FILES = ("config.json", "tokenizer.json")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def require_hf_extra() -> None:
    """torch and transformers, or one line saying which extra installs them (exit 4)."""
    for module in ("torch", "transformers"):
        try:
            __import__(module)
        except ImportError:
            raise ModelError(
                f"the transformers backend needs {module}, which is not installed: "
                f"pip install 'streamproc[hf]' (or use a bmodel with --bmodel)"
            ) from None


def resolve_model_dir(model: str) -> Path:
    """A local checkpoint folder, or a hub id fetched into (or found in) the Hugging Face cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if not _HUB_ID.match(model) or model.startswith((".", "~")):
        raise ModelError(f"model folder {model} does not exist")
    try:
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model"]
        return Path(snapshot_download(repo_id=model, allow_patterns=patterns))
    except Exception as exc:  # offline, unknown repo, no network: all mean "cannot get it"
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (HF_HUB_OFFLINE=1 and it is not in the local cache)" if offline else ""
        raise ModelError(
            f"cannot get model {model!r} from the Hugging Face hub{hint}: {type(exc).__name__}; "
            f"download it first or give a local checkpoint folder"
        ) from None


def check_model_dir(path: Path) -> tuple[dict[str, Any], ModelFamily]:
    """(config.json, its family): fail early, listing every missing file, and refuse checkpoints
    of a family streamproc does not run."""
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        missing.append("model.safetensors (or another weights file)")
    if missing:
        raise ModelError(f"model folder {path} is missing files: {', '.join(missing)}")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelError(f"{path / 'config.json'} is not valid JSON: {exc}") from None
    return config, family_of_config(config, str(path))
