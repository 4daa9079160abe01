"""Per-user paths: caches and state follow XDG; no default writable path is a fixed name in a
shared temporary folder (a second user or a second copy would find it taken)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from streamproc.config import config_from_data
from streamproc.paths import cache_dir, run_folder, state_dir


def test_xdg_variables_are_followed(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "s"))
    assert cache_dir() == tmp_path / "c" / "streamproc"
    assert state_dir() == tmp_path / "s" / "streamproc"


def test_without_them_the_home_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", "relative/is/invalid")  # the spec: ignored
    assert cache_dir() == tmp_path / ".cache" / "streamproc"
    assert state_dir() == tmp_path / ".local" / "state" / "streamproc"


def test_a_run_folder_is_private_and_goes_away():
    with run_folder("streamproc-test") as folder:
        assert (os.stat(folder).st_mode & 0o777) == 0o700
        assert str(os.getpid()) in Path(folder).name
        other = run_folder("streamproc-test")
        assert other.name != folder
        other.cleanup()
    assert not Path(folder).exists()


def test_no_default_writable_path_is_in_a_shared_temporary_folder():
    config = config_from_data({"sinks": {"mqtt": {"host": "127.0.0.1"}, "webhook": {"url": "http://h/x"}},
                               "store": {"enabled": True}})
    defaults = [config.sinks.outbox.path, config.sinks.webhook.outbox, config.sinks.attachments.dir, config.store.path]
    for path in defaults:
        # relative: the service's working directory (/var/lib/streamproc under the systemd unit)
        assert not Path(path).is_absolute(), path


def test_the_demo_keeps_its_run_in_its_own_folder(tmp_path):
    from streamproc.cli.demo import _config

    backend = {"type": "hf", "model": str(tmp_path / "m")}
    config = _config(tmp_path / "v.mp4", backend, "127.0.0.1", 1883, tmp_path / "run", "streamproc-demo/123")
    assert config.sinks.outbox.path == tmp_path / "run" / "outbox.sqlite"
    assert config.sinks.attachments.dir == tmp_path / "run" / "attachments"
    assert config.sinks.mqtt.client_id == f"streamproc-demo-{os.getpid()}"
    assert config.sinks.mqtt.topic_prefix == "streamproc-demo/123"
    assert not str(config.sinks.outbox.path).startswith(tempfile.gettempdir() + "/streamproc-demo-outbox")
