"""Token ids -> streamed text deltas (streamproc.openai_api.text): half-decoded characters and partial
stop strings are held back, a stop string ends the answer before it, and the deltas always add
up to the final text."""
from __future__ import annotations

import pytest

from streamproc.openai_api.text import StopMatched, TextStream, cut_at_stop


class Pieces:
    """A 'tokenizer' whose tokens are byte strings, decoded as UTF-8 with replacement, as BPE does."""

    stop_ids = (0,)

    def __init__(self, pieces: list[bytes]):
        self.pieces = {i + 1: p for i, p in enumerate(pieces)}

    def decode(self, ids, skip_special_tokens=True):
        return b"".join(self.pieces[i] for i in ids if i in self.pieces).decode("utf-8", "replace")


def run(pieces: list[bytes], stop=()):
    stream = TextStream(Pieces(pieces), stop)
    deltas = []
    try:
        for token in range(1, len(pieces) + 1):
            deltas.append(stream.push(token))
    except StopMatched as matched:
        deltas.append(matched.args[0])
        return deltas, stream.stopped_at, stream
    final = Pieces(pieces).decode(range(1, len(pieces) + 1)).strip()
    deltas.append(stream.finish(final))
    return deltas, final, stream


def test_deltas_add_up_and_leading_space_is_dropped():
    deltas, final, _ = run([b" A", b" cat", b" sits", b"."])
    assert deltas[:3] == ["A", " cat", " sits"] and "".join(deltas) == final == "A cat sits."


def test_a_character_split_across_tokens_waits_for_its_last_byte():
    snowman = "☃".encode()
    deltas, final, _ = run([b"It", snowman[:1], snowman[1:], b"!"])
    assert "\ufffd" not in "".join(deltas)
    assert deltas[1] == "" and deltas[2] == "☃" and "".join(deltas) == final == "It☃!"


def test_stop_string_ends_before_it_even_across_tokens():
    deltas, text, stream = run([b" The", b" door", b" is", b" EN", b"D here"], stop=["END"])
    assert text == "The door is " and "".join(deltas) == text
    assert "E" not in "".join(deltas[:4])  # the start of the stop string was held back
    assert len(stream.tokens) == 5


def test_stop_token_counts_but_shows_nothing():
    stream = TextStream(Pieces([b"Hi"]))
    assert stream.push(1) == "Hi" and stream.push(0) == "" and stream.tokens == [1, 0]


@pytest.mark.parametrize("text, stop, expected", [("a b c", ["b"], ("a ", True)), ("a b", ["x"], ("a b", False))])
def test_cut_at_stop(text, stop, expected):
    assert cut_at_stop(text, stop) == expected
