"""Alert rules: the question prompt, tolerant answer parsing, and the state machine
(raise after N, hold, clear after M, cooldown, unknown answers), keyword and regex rules."""
from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from streamproc.config.rules import RuleConfig
from streamproc.rules.alerts import RuleEngine, Verdict, parse_answer, question_prompt
from streamproc.events import validate
from tests.support.segments import make_segment

# -- the prompt and the answers ------------------------------------------------------------------


def test_question_prompt_demands_strict_json():
    prompt = question_prompt("Is a person   climbing\nthe fence?")
    assert "Is a person climbing the fence?" in prompt
    assert '{"answer": "yes", "reason":' in prompt and '{"answer": "no", "reason":' in prompt
    assert "only a JSON object" in prompt


@pytest.mark.parametrize(
    "text, answer, reason",
    [
        ('{"answer": "yes", "reason": "A man is on the fence."}', "yes", "A man is on the fence."),
        ('{"answer": "no", "reason": "Nobody is there."}', "no", "Nobody is there."),
        ('```json\n{"answer": "yes", "reason": "climbing"}\n```', "yes", "climbing"),
        ("```\n{'answer': 'no', 'reason': 'empty yard'}\n```", "no", "empty yard"),
        ("{'answer': 'Yes', 'reason': \"it's a person\"}", "yes", "it's a person"),
        ('Sure! Here is my answer: {"answer": "YES", "reason": "ladder"} Hope this helps.', "yes", "ladder"),
        ('{"Answer": "No.", "Reason": "no one"}', "no", "no one"),
        ('{"answer": true, "reason": "x"}', "yes", "x"),
        ('{"answer": "no", "reason": "trailing comma",}', "no", "trailing comma"),
        ('{"answer": "Yes, someone climbs the fence"}', "yes", "someone climbs the fence"),
        ('{"answer": "yes", "reason": "braces } and \\"quotes\\" in text"}', "yes", 'braces } and "quotes" in text'),
        ('{"answer": "yes", "reason": "cut short by max_new_tok', "yes", ""),
        ("{'answer': no, 'reason': unquoted}", "no", ""),
        ("Yes.", "yes", ""),
        ("yes - a person climbs over the fence", "yes", "a person climbs over the fence"),
        ("No, the fence is empty.", "no", "the fence is empty."),
        ("There is no person near the fence.", "no", "There is no person near the fence."),
    ],
)
def test_answers_are_parsed_tolerantly(text, answer, reason):
    verdict = parse_answer(text)
    assert (verdict.answer, verdict.reason) == (answer, reason)
    assert verdict.error is None


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "   ",
        "I cannot tell from this video.",
        '{"answer": "maybe", "reason": "blurry"}',
        '{"reason": "forgot the answer"}',
        '{"answer": 3}',
        "{answer: perhaps}",
        "Yes and no, it depends.",
        "[1, 2, 3]",
        "No. Well, yes.",
    ],
)
def test_malformed_answers_are_unknown_with_a_reason(text):
    verdict = parse_answer(text)
    assert verdict.answer == "unknown" and not verdict.known
    assert verdict.error


def test_long_reasons_are_clipped():
    verdict = parse_answer('{"answer": "yes", "reason": "' + "very " * 200 + '"}')
    assert verdict.answer == "yes" and len(verdict.reason) <= 300


# -- the state machine ---------------------------------------------------------------------------


def question_rule(**kwargs) -> RuleConfig:
    return RuleConfig(name=kwargs.pop("name", "fence"), question="Is a person climbing the fence?", **kwargs)


def run(engine: RuleEngine, answers: list, source: str = "cam1", start_index: int = 0, rule: str = "fence"):
    """Feed one answer per segment (segments 2 s long); the events per step."""
    steps = []
    for offset, answer in enumerate(answers):
        segment = make_segment(source, start_index + offset)
        steps.append(engine.evaluate(source, segment, "", {rule: answer} if answer is not None else {}))
    return steps


def transitions(steps) -> list:
    return [[e.data["transition"] for e in events] for events in steps]


YES = '{"answer": "yes", "reason": "someone is climbing"}'
NO = '{"answer": "no", "reason": "nobody there"}'


def test_raise_hold_clear_with_hysteresis():
    engine = RuleEngine([question_rule(raise_after=2, clear_after=3)])
    steps = run(engine, [YES, NO, YES, YES, YES, NO, NO, YES, NO, NO, NO, NO])
    assert transitions(steps) == [[], [], [], ["raised"], [], [], [], [], [], [], ["cleared"], []]
    raised, cleared = steps[3][0], steps[10][0]
    assert raised.data["state"] == "ON" and raised.data["verdict"] == "yes"
    assert raised.data["reason"] == "someone is climbing"
    assert raised.data["question"] == "Is a person climbing the fence?"
    assert cleared.data["state"] == "OFF" and cleared.data["reason"] == "nobody there"
    assert cleared.data["raised_at"] == raised.data["segment"]["end_wall"]
    for event in (raised, cleared):
        validate(event.data)
        assert event.source == "cam1" and event.data["rule"] == "fence" and event.data["kind"] == "question"
    assert engine.counters["raised"] == 1 and engine.counters["cleared"] == 1
    assert engine.state("fence", "cam1").on is False


def test_unknown_answers_move_nothing(caplog):
    engine = RuleEngine([question_rule(raise_after=2, clear_after=2)])
    with caplog.at_level(logging.WARNING, logger="streamproc.rules"):
        # yes, garbage, yes: garbage neither resets the run of positives nor counts as one
        steps = run(engine, [YES, "banana", YES, "{broken", None, NO, "???", NO])
    assert transitions(steps) == [[], [], ["raised"], [], [], [], [], ["cleared"]]
    assert engine.counters["unknown"] == 4
    assert "unusable answer" in caplog.text and "state unchanged" in caplog.text


def test_cooldown_blocks_raising_until_it_has_passed():
    # segments are 2 s long; the rule clock is the segment's end media time
    engine = RuleEngine([question_rule(raise_after=1, clear_after=1, cooldown_s=7)])
    steps = run(engine, [YES, NO, YES, YES, YES, YES, NO])
    # raised at end=2, cleared at end=4; positives ending at 6, 8, 10 are within 7 s; 12 - 4 >= 7 raises
    assert transitions(steps) == [["raised"], ["cleared"], [], [], [], ["raised"], ["cleared"]]
    assert engine.counters["suppressed"] == 3


def test_cooldown_can_use_an_explicit_clock():
    engine = RuleEngine([question_rule(raise_after=1, clear_after=1, cooldown_s=60)])
    seg = [make_segment("cam1", i) for i in range(4)]
    assert engine.evaluate("cam1", seg[0], "", {"fence": YES}, now=1000.0)
    assert engine.evaluate("cam1", seg[1], "", {"fence": NO}, now=1001.0)
    assert engine.evaluate("cam1", seg[2], "", {"fence": YES}, now=1030.0) == []
    assert engine.evaluate("cam1", seg[3], "", {"fence": YES}, now=1062.0)[0].data["transition"] == "raised"


def test_state_is_per_rule_and_source_and_sources_filter_rules():
    rules = [question_rule(name="fence", sources=["cam1", "cam2"]), RuleConfig(name="car", keywords=["car"])]
    engine = RuleEngine(rules)
    assert list(engine.questions_for("cam1")) == ["fence"]
    assert engine.questions_for("cam3") == {}
    assert [r.name for r in engine.rules_for("cam3")] == ["car"]
    a = engine.evaluate("cam1", make_segment("cam1", 0), "a red car", {"fence": YES})
    b = engine.evaluate("cam2", make_segment("cam2", 0), "an empty road", {"fence": NO})
    c = engine.evaluate("cam3", make_segment("cam3", 0), "a car", {"fence": YES})
    assert sorted(e.data["rule"] for e in a) == ["car", "fence"]
    assert b == []
    assert [e.data["rule"] for e in c] == ["car"]  # fence does not apply to cam3
    assert engine.state("fence", "cam1").on and not engine.state("fence", "cam2").on


def test_keyword_rules_match_whole_words_ignoring_case():
    engine = RuleEngine([RuleConfig(name="person", keywords=["person", "fire truck"], clear_after=1)])
    assert engine.evaluate("c", make_segment("c", 0), "A PERSON walks by", {})[0].data["reason"] == "caption mentions 'PERSON'"
    assert engine.evaluate("c", make_segment("c", 1), "personal items on a table", {})[0].data["transition"] == "cleared"
    event = engine.evaluate("c", make_segment("c", 2), "a red fire  truck passes", {})[0]
    assert event.data["kind"] == "keywords" and event.data["transition"] == "raised"
    validate(event.data)


def test_pattern_rules_and_case_sensitivity():
    rule = RuleConfig(name="plate", pattern=r"\b[A-Z]{2}-\d{3}\b", ignore_case=False)
    engine = RuleEngine([rule])
    assert engine.evaluate("c", make_segment("c", 0), "plate ab-123", {}) == []
    (event,) = engine.evaluate("c", make_segment("c", 1), "plate AB-123 visible", {})
    assert event.data["kind"] == "pattern" and "AB-123" in event.data["reason"]


def test_parsed_verdicts_are_accepted_as_answers():
    engine = RuleEngine([question_rule()])
    (event,) = engine.evaluate("cam1", make_segment(), "", {"fence": Verdict("yes", "given")})
    assert event.data["reason"] == "given"


def test_alert_ids_are_stable_across_a_replay_and_unique_for_live_sources():
    def replay(live: bool, wall: float):
        engine = RuleEngine([question_rule(clear_after=1)], live_sources={"cam1"} if live else ())
        ids = []
        for i, answer in enumerate([YES, NO, YES]):
            ids += [e.id for e in engine.evaluate("cam1", make_segment("cam1", i, wall=wall + i * 2), "", {"fence": answer})]
        return ids

    assert replay(False, 1000.0) == replay(False, 5000.0) == [
        "cam1:0000000000:fence:raised", "cam1:0000002000:fence:cleared", "cam1:0000004000:fence:raised",
    ]
    # live sources restart their media clock with the process: ids come from wall time instead
    first, second = replay(True, 1000.0), replay(True, 5000.0)
    assert len(set(first)) == 3 and not set(first) & set(second)


def test_rule_config_validation():
    with pytest.raises(ValidationError, match="exactly one of"):
        RuleConfig(name="x", question="Is it?", keywords=["a"])
    with pytest.raises(ValidationError, match="exactly one of"):
        RuleConfig(name="x")
    with pytest.raises(ValidationError, match="regular expression"):
        RuleConfig(name="x", pattern="(unclosed")
    with pytest.raises(ValidationError):
        RuleConfig(name="bad name", keywords=["a"])
    with pytest.raises(ValidationError):
        RuleConfig(name="x", keywords=["a"], raise_after=0)
    with pytest.raises(ValidationError):
        RuleConfig(name="x", keywords=["  "])
    with pytest.raises(ValidationError):
        RuleConfig(name="x", keywords=["a"], unknown_key=1)
    assert RuleConfig(name="x", keywords=["a"]).kind == "keywords"
