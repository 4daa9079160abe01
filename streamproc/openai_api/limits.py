"""What a chat request may cost before any model work: checks that run on the raw request.

- The body is parsed as JSON with its nesting bounded (`MAX_JSON_DEPTH`): Python's parser raises
  RecursionError on deep nesting, which must be a 400, not a 500.
- Parsing the request and decoding its media run on a small pool of their own threads
  (`DecodePool`), never on the event loop and never more than a few at once; requests beyond the
  pool's waiting room get 429. A decoded image is the big allocation, so this bounds memory.
- The messages' text is measured in bytes before it is tokenized (`check_text_size`): tokenizing
  10 MB costs tens of CPU seconds, and no tokenizer makes fewer than one token per 8 bytes of
  text, so text longer than 8 bytes x the context cannot fit.
(Image sizes are read from the file's header before decoding: media.py.)
"""
from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from .errors import ApiError, bad_request

MAX_JSON_DEPTH = 64  # OpenAI bodies nest about 6 deep; tool schemas a few dozen at most
BYTES_PER_TOKEN = 8  # no tokenizer packs more text into one token than this


def parse_json(raw: bytes) -> Any:
    """The body as JSON; 400 for invalid or too deeply nested JSON."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise bad_request(f"the request body nests JSON deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:
        raise bad_request("the request body is not valid JSON") from None
    if _depth_over(body, MAX_JSON_DEPTH):
        raise bad_request(f"the request body nests JSON deeper than {MAX_JSON_DEPTH} levels")
    return body


def _depth_over(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def check_text_size(messages: Any, context_tokens: Optional[int]) -> None:
    """400 context_length_exceeded when the messages' text alone cannot fit the context."""
    if not context_tokens or not isinstance(messages, list):
        return
    size = sum(len(text.encode("utf-8", "surrogatepass")) for text in _texts(messages))
    if size > BYTES_PER_TOKEN * context_tokens:
        raise ApiError(
            400,
            f"This model's maximum context length is {context_tokens} tokens; the messages hold {size} bytes of "
            f"text, more than {BYTES_PER_TOKEN} bytes per token of context: send shorter text",
            param="messages",
            code="context_length_exceeded",
        )


def _texts(messages: list) -> list[str]:
    texts = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return texts


class DecodePool:
    """Request parsing and media decoding on `workers` threads, with at most `waiting` more
    requests queued for them; more get 429. Counted on the event loop's thread only."""

    def __init__(self, workers: int = 2, waiting: int = 8):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="serve-decode")
        self.slots = workers + waiting
        self.used = 0

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.used >= self.slots:
            raise ApiError(429, "the server is decoding as many requests as it may; retry in a second",
                           type="rate_limit_error", code="queue_full", headers={"Retry-After": "1"})
        self.used += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self.used -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
