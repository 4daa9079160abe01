"""The config tree: defaults, errors naming key and line, ${ENV} substitution, example files."""
from __future__ import annotations

from pathlib import Path

import pytest

from streamproc.config import config_from_data, config_from_text, load_config
from streamproc.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_defaults_of_an_empty_file():
    config = config_from_text("")
    assert config.sampling.fps == 1.0
    assert config.sampling.max_pixels == 672 * 896
    assert config.sampling.video_pixels == 672 * 896 // 4
    assert config.sources == []


def test_source_kinds_and_live_default():
    config = config_from_text(
        "sources:\n"
        "  - {name: cam, url: 'rtsp://127.0.0.1:8554/cam'}\n"
        "  - {name: clip, path: a.mp4}\n"
        "  - {name: http, url: 'http://127.0.0.1/x.mp4', live: false}\n"
    )
    cam, clip, http = config.sources
    assert cam.live is True and clip.live is False and http.live is False
    assert cam.location == "rtsp://127.0.0.1:8554/cam"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("sources:\n  - name: a\n    path: x.mp4\n    promt: hi\n", "<t>:4: sources[0].promt: unknown key"),
        ("sampling:\n  fps: fast\n", "<t>:2: sampling.fps: Input should be a valid number"),
        ("sources:\n  - name: a\n", "<t>:2: sources[0]: give exactly one of url or path"),
        ("backend:\n  type: hf\n", "<t>:1: backend.model: required key is missing"),
        ("backend:\n  type: onnx\n  model: x\n", "<t>:1: backend: Input tag 'onnx' found"),
        ("sampling:\n  max_pixels: 672by896\n", "<t>:2: sampling.max_pixels: expected HEIGHTxWIDTH"),
        ("segmenting:\n  seq_length: 2048\n  bmodel: a.bmodel\n", "<t>:1: segmenting: give seq_length or bmodel"),
        ("sources:\n  - {name: a, path: x}\n  - {name: a, path: y}\n", "source names must be unique: a"),
        ("nonsense: 1\n", "<t>:1: nonsense: unknown key"),
        ("sources: [\n", "<t>:2: not valid YAML"),
        ("- 1\n- 2\n", "the config must be a mapping"),
    ],
)
def test_errors_name_the_key_and_line(text, expected):
    with pytest.raises(ConfigError) as info:
        config_from_text(text, source="<t>")
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_max_pixels_forms():
    for value in ("672x896", "[672, 896]", str(672 * 896)):
        assert config_from_text(f"sampling:\n  max_pixels: {value}\n").sampling.max_pixels == 672 * 896


def test_env_substitution_and_defaults():
    text = "sources:\n  - name: cam\n    url: rtsp://admin:${CAM_PASS}@127.0.0.1/s\n    read_timeout_s: ${TIMEOUT:-7}\n"
    config = config_from_text(text, env={"CAM_PASS": "s3cret"})
    assert config.sources[0].url == "rtsp://admin:s3cret@127.0.0.1/s"
    assert config.sources[0].read_timeout_s == 7
    with pytest.raises(ConfigError, match=r"<config>:3: sources\[0\].url: environment variable CAM_PASS is not set"):
        config_from_text(text, env={})


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", ["camera.yaml", "batch.yaml", "demo.yaml", "site-4-cameras.yaml"])
def test_example_configs_validate(name):
    path = REPO / "configs" / name
    if not path.exists():
        pytest.fail(f"configs/{name} is missing")
    load_config(path, env={"CAM_PASSWORD": "x", "MQTT_PASSWORD": "y", "STREAMPROC_API_KEY": "z" * 16})


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b", "cam\x01", "cam\n", "a+b", "a#b", " cam"])
def test_source_and_rule_names_that_are_unsafe_on_disk_are_refused(name):
    with pytest.raises(ConfigError) as refused:
        config_from_data({"sources": [{"name": name, "path": "/x.mp4"}]})
    message = str(refused.value)
    assert "\n" not in message and "sources[0].name" in message
    with pytest.raises(ConfigError) as refused:
        config_from_data({"sources": [{"name": "cam", "path": "/x.mp4"}], "rules": [{"name": name, "keywords": ["x"]}]})
    assert "\n" not in str(refused.value) and "rules[0].name" in str(refused.value)


def test_safe_names_pass():
    config = config_from_data({"sources": [{"name": "front-door.2_b", "path": "/x.mp4"}],
                               "rules": [{"name": "fence_climb-2", "keywords": ["x"]}]})
    assert config.sources[0].name == "front-door.2_b"
