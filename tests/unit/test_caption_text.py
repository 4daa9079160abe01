"""Caption cue text: WebVTT escapes markup characters, SRT stays plain, long captions are wrapped
to two lines of at most 42 characters per cue and split into timed cues; both files load in
`webvtt-py` and `srt` with the words intact."""
from __future__ import annotations

import datetime as dt
import html

import srt
import webvtt

from streamproc.events import caption_event
from streamproc.sinks.captions import CaptionFileSink, LINE_CHARS, wrap_cues
from tests.support.segments import make_result, make_segment

MARKUP = "Tom & Jerry: <EXIT> sign > door, a -> b & <b>bold</b>"
LONG = " ".join(f"word{i:02d} & <tag{i % 7}>" for i in range(30))[:300]


def seconds(value) -> float:
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    hours, minutes, rest = value.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


def words(text: str) -> list[str]:
    return text.split()


def write(tmp_path, texts, duration=40.0):
    sink = CaptionFileSink(tmp_path, ["srt", "vtt"])
    sink.start()
    events = [caption_event(make_segment("cam1", i, duration=duration), make_result(t)) for i, t in enumerate(texts)]
    for event in events:
        sink.handle(event)
    sink.stop()
    return events, list(srt.parse((tmp_path / "cam1.srt").read_text(encoding="utf-8"))), webvtt.read(str(tmp_path / "cam1.vtt")).captions


def test_markup_is_escaped_in_webvtt_and_plain_in_srt(tmp_path):
    (event,), subs, cues = write(tmp_path, [MARKUP])
    raw = (tmp_path / "cam1.vtt").read_text(encoding="utf-8")
    assert "<EXIT>" not in raw and "&lt;EXIT&gt;" in raw and "Tom &amp; Jerry" in raw
    assert "<EXIT>" in (tmp_path / "cam1.srt").read_text(encoding="utf-8")
    # the words come back intact: SRT as written, WebVTT once its entities are decoded
    assert words(" ".join(s.content for s in subs)) == words(MARKUP)
    assert words(html.unescape(" ".join(c.text for c in cues))) == words(MARKUP)


def test_a_300_character_caption_is_wrapped_and_split_into_timed_cues(tmp_path):
    assert len(LONG) == 300
    (event,), subs, cues = write(tmp_path, [LONG])
    segment = event.data["segment"]
    assert len(subs) == len(cues) >= 4  # 300 characters cannot fit in 2 x 42
    for sub, cue in zip(subs, cues, strict=True):
        lines = sub.content.split("\n")
        assert 1 <= len(lines) <= 2 and all(len(line) <= LINE_CHARS for line in lines)
        assert len(cue.text.split("\n")) <= 2
        assert (seconds(sub.start), seconds(sub.end)) == (seconds(cue.start), seconds(cue.end))
    # the cues tile the segment's time range in order, without overlap
    assert seconds(subs[0].start) == segment["start"] and seconds(subs[-1].end) == segment["end"]
    for before, after in zip(subs, subs[1:]):
        assert seconds(before.end) == seconds(after.start) and seconds(after.end) > seconds(after.start)
    assert [s.index for s in subs] == list(range(1, len(subs) + 1))
    assert words(" ".join(s.content for s in subs)) == words(LONG)
    assert words(html.unescape(" ".join(c.text for c in cues))) == words(LONG)


def test_cue_numbers_continue_across_captions(tmp_path):
    events, subs, cues = write(tmp_path, [LONG, "short", MARKUP])
    assert [s.index for s in subs] == list(range(1, len(subs) + 1))
    assert [c.identifier for c in cues] == [str(i) for i in range(1, len(cues) + 1)]
    assert subs[-2].content == "short"
    assert seconds(subs[-2].start) == events[1].data["segment"]["start"]


def test_wrap_keeps_short_text_as_one_cue_and_breaks_long_words():
    assert wrap_cues("a short caption", 0.0, 2.0) == [(0.0, 2.0, "a short caption")]
    (first, *rest) = wrap_cues("x" * 100, 0.0, 10.0)
    assert all(len(line) <= LINE_CHARS for line in first[2].split("\n"))
    assert rest and rest[-1][1] == 10.0
