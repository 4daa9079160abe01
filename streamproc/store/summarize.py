"""Text summaries of stored captions, map-reduce style, so any number of captions fits the model.

Map: the captions (time-stamped lines, in time order) are cut into chunks whose whole request --
chat template, instructions, lines -- plus the answer fits the model's context; token counts come
from the model's own tokenizer, and every request is checked after it is built. Each chunk gets
a partial summary. Reduce: the partial summaries, each labelled with its time range, are chunked
the same way and summarised again, until one is left. The result ends with the time ranges it is
based on (written by us, not left to the model), so a reader can go back to the captions.

Text only: the request has no image or video, so it works on every backend (the TPU engine runs
a text prompt without the ViT). Token counts come from the model's tokenizer when the backend has
one (Qwen's); the openai backend without a local tokenizer gets an estimate that errs long
(`TokenCounter`), and every request is still checked by the backend's own count before it goes.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, Optional, Sequence

from ..errors import InputTooLarge
from .timeparse import clock

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 8192
SYSTEM = "You are a concise assistant that summarises security camera logs."
MAP_PROMPT = (
    "Below are time-stamped captions of what {who} saw between {start} and {end}, one per line. "
    "Summarise what happened in a few sentences, in time order, and give the times of notable events."
)
REDUCE_PROMPT = (
    "Below are summaries of consecutive time ranges of what {who} saw between {start} and {end}. "
    "Combine them into one summary in a few sentences, in time order, keeping the times of notable events."
)
_MARGIN = 4  # tokens kept free: the sum of per-line counts can differ slightly from the whole text's


@dataclass
class Step:
    """One model call: `level` 0 is a map step over entries, 1+ reduce steps over summaries."""

    level: int
    start: float
    end: float
    items: list[str]  # entry ids (map) or the ranges of the summaries (reduce)
    prompt_tokens: int
    answer_tokens: int
    text: str = ""


@dataclass
class Summary:
    text: str
    start: float
    end: float
    entries: int
    ranges: list[dict[str, Any]]  # the map steps' spans: {start, end, entries}
    model: str
    steps: list[Step] = field(default_factory=list)
    context_tokens: int = 0


class TokenCounter:
    """Token counts of text and cutting text to a count: exact with Qwen's tokenizer, else (a
    remote model without a local tokenizer) one token per 3 characters, which errs long for
    the BPE vocabularies of vision-language models, so chunks come out short, never too long."""

    CHARS_PER_TOKEN = 3.0

    def __init__(self, tokenizer: Any):
        from ..qwen.tokenizer import QwenTokenizer

        self.tokenizer = tokenizer if isinstance(tokenizer, QwenTokenizer) else None

    def counts(self, texts: Sequence[str]) -> list[int]:
        if self.tokenizer is None:
            return [math.ceil(len(text) / self.CHARS_PER_TOKEN) for text in texts]
        return [len(ids) for ids in self.tokenizer.encode_batch(list(texts))]

    def cut(self, text: str, tokens: int) -> str:
        if self.tokenizer is None:
            return text[: int(tokens * self.CHARS_PER_TOKEN)]
        return self.tokenizer.decode(self.tokenizer.encode(text)[:tokens])


@dataclass
class _Line:
    start: float
    end: float
    text: str
    ids: list[str]
    entries: int


class Summarizer:
    """Summaries by one backend (not shared with other threads while it runs)."""

    def __init__(
        self,
        backend: Any,
        *,
        context_tokens: Optional[int] = None,
        max_new_tokens: int = 256,
        tz: Optional[tzinfo] = None,
        system: str = SYSTEM,
    ):
        from ..backends.base import GenerationParams

        self.backend = backend
        self.builder = backend.inputs
        self.counter = TokenCounter(self.builder.tokenizer)
        limit = getattr(backend, "seq_length", None)
        context = context_tokens or limit or DEFAULT_CONTEXT
        self.context = min(context, limit) if limit else context
        self.system = system
        self.tz = tz
        overhead = self._request_tokens(MAP_PROMPT.format(who="x" * 40, start="2000-01-01 00:00", end="2000-01-01 00:00"))
        room = self.context - overhead - _MARGIN
        if room < 96:
            raise InputTooLarge(f"a context of {self.context} tokens leaves no room to summarise (the prompt takes {overhead})")
        # At most a quarter of the room for an answer, so that a reduce step always joins several summaries.
        self.answer_tokens = max(16, min(max_new_tokens, room // 4))
        self.params = GenerationParams(max_new_tokens=self.answer_tokens, repetition_penalty=1.05)

    # -- public ---------------------------------------------------------------------------------

    def summarize(self, entries: Sequence[dict[str, Any]], *, start: float, end: float, who: str) -> Summary:
        """Summarise `entries` (dicts with event_id, kind, source, start, end, text; time order)."""
        model = getattr(self.backend, "model_id", "")
        if not entries:
            text = f"Nothing was recorded between {self._t(start)} and {self._t(end)}."
            return Summary(text, start, end, 0, [], model, [], self.context)
        lines = [self._entry_line(e) for e in entries]
        steps: list[Step] = []
        level = 0
        while True:
            prompt = MAP_PROMPT if level == 0 else REDUCE_PROMPT
            chunks = self._chunks(lines, prompt, who, start, end)
            if level > 0 and len(chunks) >= len(lines):  # cannot happen with answer <= room/4; never loop
                raise InputTooLarge("the partial summaries do not fit the model's context two at a time")
            outputs = []
            for chunk in chunks:
                step = self._run(level, chunk, prompt, who)
                steps.append(step)
                first, last = chunk[0], chunk[-1]
                label = f"[{self._t(first.start)} - {self._t(last.end)}]"
                outputs.append(_Line(first.start, max(c.end for c in chunk), f"{label} {step.text}",
                                     [label], sum(c.entries for c in chunk)))
            if level == 0:
                ranges = [{"start": o.start, "end": o.end, "entries": o.entries} for o in outputs]
            if len(outputs) == 1:
                break
            lines, level = outputs, level + 1
        answer = steps[-1].text.strip()
        cited = "; ".join(f"{self._t(r['start'])} - {self._t(r['end'])} ({r['entries']} entries)" for r in ranges)
        text = f"{answer}\n\nBased on {len(entries)} stored entries from {who}: {cited}."
        return Summary(text, start, end, len(entries), ranges, model, steps, self.context)

    # -- chunking -------------------------------------------------------------------------------

    def _chunks(self, lines: list[_Line], prompt: str, who: str, start: float, end: float) -> list[list[_Line]]:
        header = prompt.format(who=who, start=self._t(start), end=self._t(end)) + "\n"
        budget = self.context - self.answer_tokens - self._request_tokens(header) - _MARGIN
        counts = self.counter.counts([line.text + "\n" for line in lines])
        chunks: list[list[_Line]] = []
        current: list[_Line] = []
        used = 0
        for line, count in zip(lines, counts):
            if count > budget // 2:  # one very long caption: keep its start (a chunk must hold two lines)
                line, count = self._truncate(line, budget // 2)
            if current and used + count > budget:
                chunks.append(current)
                current, used = [], 0
            current.append(line)
            used += count
        if current:
            chunks.append(current)
        return chunks

    def _truncate(self, line: _Line, tokens: int) -> tuple[_Line, int]:
        text = self.counter.cut(line.text, max(1, tokens - 2)) + " …"
        return _Line(line.start, line.end, text, line.ids, line.entries), self.counter.counts([text + "\n"])[0]

    # -- model calls ----------------------------------------------------------------------------

    def _run(self, level: int, chunk: list[_Line], prompt: str, who: str) -> Step:
        first, last = chunk[0], chunk[-1]
        header = prompt.format(who=who, start=self._t(first.start), end=self._t(last.end))
        text = header + "\n" + "\n".join(line.text for line in chunk)
        inputs = self.builder.build(text, system=self.system)
        if inputs.total_tokens + self.answer_tokens > self.context:  # the estimate was short: never send it
            raise InputTooLarge(
                f"a summary request of {inputs.total_tokens} tokens + {self.answer_tokens} does not fit {self.context}"
            )
        result = self.backend.describe(inputs, self.params)
        items = [i for line in chunk for i in line.ids]
        log.debug("summary level %d: %d lines, %d prompt tokens", level, len(chunk), inputs.total_tokens)
        return Step(level, first.start, last.end, items, inputs.total_tokens, self.answer_tokens, result.text.strip())

    def _request_tokens(self, prompt: str) -> int:
        return self.builder.prompt_tokens(prompt, self.system, visuals=())

    def _entry_line(self, entry: dict[str, Any]) -> _Line:
        what = "ALERT " if entry.get("kind") == "alert" else ""
        stamp = f"[{clock(entry['start'], self.tz, False)}-{clock(entry['end'], self.tz, False)}]"
        text = " ".join(str(entry.get("text", "")).split())
        return _Line(entry["start"], entry["end"], f"{stamp} {entry['source']}: {what}{text}", [entry["event_id"]], 1)

    def _t(self, ts: float) -> str:
        return clock(ts, self.tz)
