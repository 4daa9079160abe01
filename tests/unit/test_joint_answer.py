"""The joint answer (issue 22 item 2): one call answers the caption and every rule. The prompt,
the fixed-line parser (an unparseable verdict is unknown, never a clear), and the stream watcher
that hands the verdicts on before the caption is decoded."""
from __future__ import annotations

import pytest

from streamproc.rules.answers import VerdictStream, caption_words, joint_prompt, parse_joint

QUESTIONS = {"fence": "Is a person climbing   the fence?", "parcel": "Is a parcel left at the door?"}


def test_prompt_asks_every_question_the_lines_and_the_budget():
    prompt = joint_prompt("Describe the video.", QUESTIONS, 40)
    assert prompt.startswith(f"Describe the video. Use at most {caption_words(40)} words.")
    assert "fence: Is a person climbing the fence?" in prompt and "parcel: Is a parcel left at the door?" in prompt
    lines = prompt.splitlines()
    assert lines.index("fence: yes or no") < lines.index("parcel: yes or no") < lines.index("caption: <the description>")
    assert joint_prompt("Describe the video.", {}, 80) == f"Describe the video. Use at most {caption_words(80)} words."


@pytest.mark.parametrize("text, fence, parcel, caption", [
    ("fence: yes\nparcel: no\ncaption: A man climbs the fence.", "yes", "no", "A man climbs the fence."),
    ("- **fence**: No.\n- parcel: Yes, a box\n\nCaption: A courier leaves a box.", "no", "yes", "A courier leaves a box."),
    ("FENCE = yes\nparcel: no\nA man on the fence.", "yes", "no", "A man on the fence."),
    # missing, neither, both: unknown
    ("parcel: no\ncaption: Nobody.", "unknown", "no", "Nobody."),
    ("fence: maybe\nparcel: yes and no\ncaption: Blurry.", "unknown", "unknown", "Blurry."),
    ("fence: yes\nfence: no\nparcel: no\ncaption: x", "unknown", "no", "x"),
    ("", "unknown", "unknown", ""),
    ("A man walks by the fence.", "unknown", "unknown", "A man walks by the fence."),
])
def test_joint_answers_parse_or_are_unknown(text, fence, parcel, caption):
    got_caption, verdicts = parse_joint(text, list(QUESTIONS))
    assert (verdicts["fence"].answer, verdicts["parcel"].answer, got_caption) == (fence, parcel, caption)
    for verdict in verdicts.values():
        assert verdict.known == (verdict.error is None)


def test_stream_is_ready_when_every_verdict_line_is_complete():
    answer = "fence: yes\nparcel: no\ncaption: A man climbs."
    stream = VerdictStream(list(QUESTIONS), lambda ids: "".join(chr(i) for i in ids))
    ready_at = [i for i, ch in enumerate(answer) if stream.feed(ord(ch))]
    assert ready_at == [answer.index("\ncaption")]  # once, at the newline that ends the last verdict line
    assert {n: v.answer for n, v in stream.verdicts.items()} == {"fence": "yes", "parcel": "no"}


def test_stream_of_an_answer_without_lines_never_claims_verdicts():
    stream = VerdictStream(list(QUESTIONS), lambda ids: "".join(chr(i) for i in ids))
    assert not any(stream.feed(ord(ch)) for ch in "A man walks.\nNothing else.")
    assert not stream.ready
