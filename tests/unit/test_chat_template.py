"""The system turn is what the tokenizer folder's chat template adds, unless the user says otherwise."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from streamproc.config import config_from_text
from streamproc.qwen import InputBuilder
from streamproc.qwen.prompt import NO_SYSTEM, template_default_system

# Qwen2.5-VL's template without the default system turn (as some fine-tunes ship it).
NO_DEFAULT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}"
    "<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def no_default_dir(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("no-default-system") / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": NO_DEFAULT_TEMPLATE}))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = NO_DEFAULT_TEMPLATE  # where transformers' tokenizer looks
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_the_templates_own_default_is_found(tiny_model_dir, no_default_dir):
    assert template_default_system(tiny_model_dir) == "You are a helpful assistant."
    assert template_default_system(no_default_dir) is None


def test_no_system_turn_unless_the_template_or_the_user_adds_one(tiny_model_dir, no_default_dir):
    image = [np.zeros((56, 56, 3), np.uint8)]
    qwen = InputBuilder.from_pretrained(tiny_model_dir)
    plain = InputBuilder.from_pretrained(no_default_dir)
    assert qwen.build("Hi", images=image).prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    assert plain.build("Hi", images=image).prompt.startswith("<|im_start|>user\n")
    assert qwen.build("Hi", images=image, system=NO_SYSTEM).prompt.startswith("<|im_start|>user\n")
    assert plain.build("Hi", images=image, system="Be brief.").prompt.startswith("<|im_start|>system\nBe brief.")
    # The token budget counts the same turns the request will have.
    assert plain.prompt_tokens("Hi") < qwen.prompt_tokens("Hi")


def test_same_text_as_transformers_renders_from_the_folders_template(no_default_dir):
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(no_default_dir))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    reference = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ours = InputBuilder.from_pretrained(no_default_dir).build("Hi", images=[np.zeros((56, 56, 3), np.uint8)])
    assert ours.prompt == reference


def test_config_prompt_system_is_optional_or_false():
    assert config_from_text("{}").prompt.system is None
    assert config_from_text("prompt: {system: false}").prompt.system is False
    assert config_from_text("prompt: {system: Watch the door.}").prompt.system == "Watch the door."


def test_chat_takes_system_and_no_system_and_the_seed_demos_flags():
    from streamproc.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["chat", "-m", "x.bmodel", "-c", "config", "-d", "1", "--no-system"])
    assert (str(args.bmodel), str(args.tokenizer), args.device_id, args.no_system) == ("x.bmodel", "config", 1, True)
    args = parser.parse_args(["chat", "--model_path", "x.bmodel", "--config_path", "cfg", "--system", "Be brief."])
    assert (str(args.bmodel), str(args.tokenizer), args.system) == ("x.bmodel", "cfg", "Be brief.")
    with pytest.raises(SystemExit):
        parser.parse_args(["chat", "-m", "x.bmodel", "--system", "a", "--no-system"])
