"""A chat-completions request body -> the model's inputs, generation parameters and options.

What is taken from OpenAI's request (everything else a client may send, like `user`,
`logit_bias` or zero penalties, is ignored; what cannot be honoured is a 400 that says why):
- `messages`: system/developer, user and assistant turns; user content is a string or a list of
  `text`, `image_url` (data: URL or a local path) and video parts: `video_url` (a video file)
  or `video` (a list of frame URLs), with an optional `fps` (default 1);
- `max_completion_tokens` / `max_tokens`, `temperature`, `top_p`, `seed`, `stop`, `stream`,
  `stream_options.include_usage`, `n` (1 only);
- `tools` are accepted but never called (the model answers in text); a forced tool_choice is a 400.

Sampling: temperature 0 or no temperature/top_p is greedy decoding, which every model can do;
anything else samples, which a bmodel can only do when it was compiled with a sample head.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence

import numpy as np

from ..backends.base import GenerationParams
from ..qwen.inputs import ModelInputs, _pad_offsets
from ..qwen.prompt import Message, Vision, expand_pads, render_chat
from .errors import ApiError, bad_request
from .limits import check_text_size
from .media import MediaPolicy, frames_to_video, load_image, load_video_file, parse_fps

MAX_STOP_STRINGS = 4


@dataclass(frozen=True)
class ServedModel:
    """What the server knows about the model it serves."""

    name: str  # the id clients send as `model`
    can_sample: bool
    context_length: Optional[int]  # tokens, prompt and answer together; None: no hard limit
    default_max_tokens: int = 512
    greedy_fallback: bool = False  # run sampling requests greedily instead of refusing them
    base_params: GenerationParams = field(default_factory=GenerationParams)


@dataclass
class ChatJob:
    """One parsed request, ready for a backend."""

    id: str
    inputs: ModelInputs
    params: GenerationParams
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    summary: dict[str, Any] = field(default_factory=dict)  # for the request log: counts, no content


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def check_model(body: dict[str, Any], served: ServedModel) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("you must give `model`", "model")
    if model != served.name:
        raise ApiError(404, f"The model `{model}` does not exist; this server serves `{served.name}`", param="model",
                       code="model_not_found")


def parse_chat(body: Any, served: ServedModel, builder: Any, media: MediaPolicy) -> ChatJob:
    """Validate the body and build the model inputs (decodes images and videos)."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    check_model(body, served)
    check_text_size(body.get("messages"), served.context_length)  # before any tokenizing or decoding
    if body.get("n") not in (None, 1):
        raise bad_request("only n=1 is supported", "n", "unsupported_value")
    # Tools are offered, never called: answering in text is a valid choice for the model, so
    # clients that always send their tools (Home Assistant's conversation agents) still work.
    choice = body.get("tool_choice")
    if (body.get("tools") or body.get("functions")) and choice not in (None, "auto", "none"):
        raise bad_request("this server's model does not call tools: tool_choice must be auto or none", "tool_choice",
                          "unsupported_value")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise bad_request("`stream` must be true or false", "stream")
    options = body.get("stream_options") or {}
    include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
    stop = _stop_strings(body.get("stop"))
    messages, images, summary = _conversation(body.get("messages"), builder, media)
    inputs = build_inputs(builder, messages, images)
    params = _params(body, served, inputs.total_tokens)
    summary.update(prompt_tokens=inputs.total_tokens, visual_tokens=inputs.visual_tokens)
    return ChatJob(new_id(), inputs, params, stop, stream, include_usage, summary)


# -- generation parameters ----------------------------------------------------------------------


def _number(body: dict[str, Any], name: str, low: float, high: float) -> Optional[float]:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise bad_request(f"`{name}` must be a number from {low} to {high}", name, "invalid_value")
    return float(value)


def _params(body: dict[str, Any], served: ServedModel, prompt_tokens: int) -> GenerationParams:
    temperature = _number(body, "temperature", 0.0, 2.0)
    top_p = _number(body, "top_p", 0.0, 1.0)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise bad_request("`seed` must be an integer", "seed", "invalid_value")
    sample = (temperature is not None and temperature > 0) or (temperature is None and top_p is not None and top_p < 1)
    if sample and not served.can_sample and not served.greedy_fallback:
        raise bad_request(
            f"{served.name} decodes greedily only (the bmodel was compiled without a sampling head, "
            "llm_convert.py --do_sample): send temperature 0, or leave out temperature and top_p",
            "temperature" if temperature is not None else "top_p",
            "unsupported_value",
        )
    sample = sample and served.can_sample
    max_tokens = _max_tokens(body, served, prompt_tokens)
    base = served.base_params
    return replace(
        base,
        max_new_tokens=max_tokens,
        do_sample=sample,
        temperature=temperature if temperature else base.temperature,
        top_p=top_p if top_p else base.top_p,
        seed=seed if seed is not None else base.seed,
    )


def _max_tokens(body: dict[str, Any], served: ServedModel, prompt_tokens: int) -> int:
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    asked = body.get(name)
    if asked is not None and (isinstance(asked, bool) or not isinstance(asked, int) or asked < 1):
        raise bad_request(f"`{name}` must be a positive integer", name, "invalid_value")
    limit = served.context_length
    room = None if limit is None else limit - prompt_tokens
    if room is not None and room < 1:
        raise ApiError(
            400,
            f"This model's maximum context length is {limit} tokens; the messages take {prompt_tokens}, "
            "leaving nothing for the answer: send fewer or smaller images, or shorter text",
            param="messages",
            code="context_length_exceeded",
        )
    if asked is None:
        return served.default_max_tokens if room is None else min(served.default_max_tokens, room)
    if room is not None and asked > room:
        raise ApiError(
            400,
            f"This model's maximum context length is {limit} tokens; the messages take {prompt_tokens} and "
            f"{name} asks for {asked} more: lower {name} to at most {room}",
            param=name,
            code="context_length_exceeded",
        )
    return asked


def _stop_strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > MAX_STOP_STRINGS:
        raise bad_request(f"`stop` must be a string or a list of up to {MAX_STOP_STRINGS} strings", "stop")
    return tuple(s for s in stops if s)


# -- messages -----------------------------------------------------------------------------------


def _conversation(
    raw: Any, builder: Any, media: MediaPolicy
) -> tuple[list[Message], list[tuple[str, np.ndarray, float]], dict[str, Any]]:
    """streamproc Messages (visual parts as placeholders) and the media, in order."""
    if not isinstance(raw, list) or not raw:
        raise bad_request("`messages` must be a non-empty list", "messages")
    messages: list[Message] = []
    visuals: list[tuple[str, np.ndarray, float]] = []  # (kind, frames, fps)
    for index, message in enumerate(raw):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise bad_request("each message must be an object", param)
        role = message.get("role")
        content = message.get("content")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise bad_request(f"role {role!r} is not supported (system, developer, user, assistant)", f"{param}.role")
        if role == "user":
            messages.append(Message("user", _user_parts(content, builder, media, visuals, param)))
        else:
            messages.append(Message(role, _plain_text(content, f"{param}.content")))
    if messages[-1].role != "user":
        raise bad_request("the last message must be a user message", "messages")
    summary = {
        "messages": len(messages),
        "images": sum(1 for kind, _, _ in visuals if kind == "image"),
        "videos": sum(1 for kind, _, _ in visuals if kind == "video"),
    }
    return messages, visuals, summary


def _plain_text(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad_request("system and assistant messages take text parts only", param)
            texts.append(part["text"])
        return "".join(texts)
    raise bad_request("message content must be a string or a list of parts", param)


def _user_parts(content: Any, builder: Any, media: MediaPolicy, visuals: list, param: str) -> list:
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list) or not content:
        raise bad_request("user content must be a string or a non-empty list of parts", f"{param}.content")
    parts: list = []
    vision = builder.vision
    for number, part in enumerate(content):
        where = f"{param}.content[{number}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(part["text"])
        elif kind == "image_url":
            visuals.append(("image", load_image(_url_of(part, "image_url", where), media, where, vision), 0.0))
            parts.append(Vision.IMAGE)
        elif kind == "video_url":
            fps = parse_fps(part.get("fps", _field(part, "video_url", "fps")), where)
            frames = load_video_file(_url_of(part, "video_url", where), media, vision, fps, where)
            visuals.append(("video", frames, fps))
            parts.append(Vision.VIDEO)
        elif kind == "video":
            urls = part.get("video")
            if not isinstance(urls, list) or not urls:
                raise bad_request("a video part needs `video`: a list of frame URLs", where)
            fps = parse_fps(part.get("fps"), where)
            frames = (load_image(u if isinstance(u, str) else _url_of({"x": u}, "x", where), media, where, vision,
                                 resize=False) for u in urls)
            visuals.append(("video", frames_to_video(frames, vision), fps))
            parts.append(Vision.VIDEO)
        else:
            raise bad_request(
                f"part type {kind!r} is not supported (text, image_url, video_url, video)", f"{where}.type"
            )
    return parts


def _field(part: dict, key: str, name: str) -> Any:
    value = part.get(key)
    return value.get(name) if isinstance(value, dict) else None


def _url_of(part: dict, key: str, where: str) -> str:
    value = part.get(key)
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise bad_request(f"`{key}` needs a url", where)
    return url


# -- model inputs -------------------------------------------------------------------------------


def build_inputs(builder: Any, messages: Sequence[Message], visuals: Sequence[tuple[str, Any, float]]) -> ModelInputs:
    """A whole conversation as model inputs: InputBuilder.build's steps for any turns.

    For a system turn plus one user turn this is exactly builder.build(...) (what `streamproc
    chat` sends), so answers match; further turns are rendered with the same chat template.
    """
    media = [builder._image(frames) if kind == "image" else builder._video(frames, fps) for kind, frames, fps in visuals]
    # The system turn the folder's chat template adds when the request has none, as build() does.
    text = render_chat(messages, default_system=getattr(builder.spec, "default_system", True))
    pads = (builder.tokens.image_pad, builder.tokens.video_pad)
    counts = [item.tokens for item in media]
    ids = expand_pads(builder.tokenizer.encode(text), pads, counts)
    blocks = tuple(item.block(offset) for item, offset in zip(media, _pad_offsets(ids, pads, counts)))
    return builder._assemble(ids, blocks, text, 0, tuple(messages))
