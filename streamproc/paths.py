"""Where streamproc keeps a user's files when nothing says otherwise (XDG base directories).

- caches (the demo's sample video and tiny model, the simulator runtime, bench data):
  `$XDG_CACHE_HOME/streamproc`, else `~/.cache/streamproc`;
- state that outlives a run but is no one's config (none by default today: the service's outbox,
  store and attachments are relative to its working directory, /var/lib/streamproc under the
  systemd unit): `$XDG_STATE_HOME/streamproc`, else `~/.local/state/streamproc`.

Never a fixed name in a shared temporary folder: a second user, or a second copy of the same
command, would find it taken. What lives only as long as one process (the demo's outbox and
broker) goes into a private folder of its own (`run_folder`).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable, "")
    # The XDG spec: a relative path in these variables is invalid and is ignored.
    base = Path(value) if value and os.path.isabs(value) else Path.home() / fallback
    return base / "streamproc"


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache")


def state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state")


def run_folder(prefix: str) -> tempfile.TemporaryDirectory:
    """A folder only this process uses (mode 0700, a random name), removed when closed."""
    return tempfile.TemporaryDirectory(prefix=f"{prefix}-{os.getpid()}-")
