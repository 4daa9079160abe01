"""Token ids -> text as they are generated: deltas safe to send, and OpenAI's `stop` strings.

The engine hands out token ids one at a time. A character can span tokens and a stop string can
span deltas, so the text is decoded from all tokens so far and what may still change is held
back: a trailing half-decoded character (U+FFFD), and as many characters as the longest stop
string minus one. Leading whitespace is dropped, as the backends strip their answers.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence


class StopMatched(Exception):
    """Raised from the token callback to end generation: a stop string appeared."""


class Cancelled(Exception):
    """Raised from the token callback to end generation: the client went away."""


class TextStream:
    def __init__(self, builder: Any, stop: Sequence[str] = ()):
        self.builder = builder
        self.stop = tuple(s for s in stop if s)
        self._hold = max((len(s) for s in self.stop), default=1) - 1
        self._stop_ids = set(builder.stop_ids)
        self.tokens: list[int] = []  # every generated id, stop tokens included (usage counts them)
        self._text_ids: list[int] = []
        self.shown = ""
        self.stopped_at: Optional[str] = None  # the answer up to a matched stop string

    def push(self, token: int) -> str:
        """Record one token; the new text that is safe to show (may be empty). Raises
        StopMatched once a stop string appears (the text before it is in `stopped_at`)."""
        self.tokens.append(int(token))
        if token in self._stop_ids:
            return ""
        self._text_ids.append(int(token))
        text = self.builder.decode(self._text_ids).lstrip()
        cut = self._find_stop(text)
        if cut is not None:
            self.stopped_at = text[:cut]
            delta = self._advance(self.stopped_at)
            raise StopMatched(delta)
        ready = text.rstrip("\ufffd")
        if self._hold:
            ready = ready[: max(len(ready) - self._hold, len(self.shown))]
        return self._advance(ready)

    def finish(self, final_text: str) -> str:
        """What is left to show once generation ended, given the answer's final text."""
        return self._advance(final_text)

    def _find_stop(self, text: str) -> Optional[int]:
        found = [text.find(s) for s in self.stop]
        found = [i for i in found if i >= 0]
        return min(found) if found else None

    def _advance(self, text: str) -> str:
        if len(text) > len(self.shown) and text.startswith(self.shown):
            delta, self.shown = text[len(self.shown):], text
            return delta
        return ""


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` up to its first stop string (for answers made without a token callback)."""
    found = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(found)], True) if found else (text, False)
