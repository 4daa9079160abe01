"""Shared fixtures: generated test videos (cached per session) and small helpers."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from streamproc.samples import write_video


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def make_video(media_dir):
    """make_video(name_suffix='.mp4', **write_video kwargs) -> Path, generated once per session."""

    def make(suffix: str = ".mp4", **kwargs) -> Path:
        key = hashlib.sha1(json.dumps(kwargs, sort_keys=True, default=str).encode()).hexdigest()[:12]
        path = media_dir / f"video-{key}{suffix}"
        if not path.exists():
            write_video(path, **kwargs)
        return path

    return make
