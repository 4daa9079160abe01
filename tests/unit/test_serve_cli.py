"""`streamproc serve`'s command line: one-line usage errors before any model loads."""
from __future__ import annotations

from streamproc.cli import main


def test_needs_exactly_one_model_source(capsys):
    assert main(["serve"]) == 2
    assert "give a config file, or --bmodel" in capsys.readouterr().err
    assert main(["serve", "--model", "a", "--bmodel", "b.bmodel"]) == 2


def test_refuses_to_serve_an_openai_backend(tmp_path, capsys):
    config = tmp_path / "proxy.yaml"
    config.write_text("backend: {type: openai, base_url: 'http://127.0.0.1:9/v1', model: m}\n")
    assert main(["serve", str(config)]) == 2
    assert "serves a tpu or hf backend" in capsys.readouterr().err


def test_config_without_backend(tmp_path, capsys):
    config = tmp_path / "empty.yaml"
    config.write_text("sources: []\n")
    assert main(["serve", str(config)]) == 2
    assert "has no backend section" in capsys.readouterr().err


def test_every_flag_has_help_and_shows_its_default():
    from streamproc.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    sub = commands["serve"]
    assert sub.description and "examples:" in sub.format_help()
    for action in sub._actions:
        assert action.help, action.option_strings
        if action.option_strings and action.default not in (None, False, [], "==SUPPRESS=="):
            assert "default" in sub.formatter_class("x")._get_help_string(action).lower(), action.option_strings
