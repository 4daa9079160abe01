"""Yes/no questions for the model and tolerant parsing of its answers.

The model is asked for strict JSON {"answer": "yes"|"no", "reason": "..."}. Small models wrap it in
code fences, use single quotes, add chatter, or just say "Yes." -- all of which still carry a clear
verdict, so they are accepted. Anything without a clear verdict becomes `unknown`, which the rule
engine counts and otherwise ignores: a garbled answer must neither raise nor clear an alert.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Optional, Sequence

Answer = Literal["yes", "no", "unknown"]
MAX_REASON = 300

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_YES = {"yes", "y", "true", "1"}
_NO = {"no", "n", "false", "0"}
_WORD_YES = re.compile(r"\byes\b", re.I)
_WORD_NO = re.compile(r"\bno\b", re.I)
_LEADING = re.compile(r"^\W*(yes|no)\b\W*(.*)$", re.I | re.S)
# A JSON answer cut short (max_new_tokens) or otherwise broken still states its verdict early on.
_ANSWER_FIELD = re.compile(r"""["']?answer["']?\s*:\s*["']?(yes|no)\b""", re.I)


@dataclass(frozen=True)
class Verdict:
    answer: Answer
    reason: str = ""
    error: Optional[str] = None  # why an answer is unknown

    @property
    def known(self) -> bool:
        return self.answer != "unknown"


def question_prompt(question: str) -> str:
    """The text asked of the model for one rule (pass `rule.question`)."""
    question = " ".join(question.split())
    return (
        f"Answer this question about the video: {question}\n"
        'Reply with only a JSON object and nothing else, in this exact form: '
        '{"answer": "yes", "reason": "<one short sentence>"} or '
        '{"answer": "no", "reason": "<one short sentence>"}'
    )


def _clip(text: Any) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def _objects(text: str) -> list[str]:
    """Candidate {...} spans, outermost first, found by brace matching (strings respected)."""
    spans, depth, start, quote, escaped = [], 0, -1, "", False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        if ch in "\"'" and depth:
            quote = ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return spans


def _load(span: str) -> Optional[dict]:
    for attempt in (span, re.sub(r",\s*}", "}", span)):
        try:
            value = json.loads(attempt)
        except ValueError:
            try:  # single quotes, True/False: a Python literal
                value = ast.literal_eval(attempt)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
        if isinstance(value, dict):
            return value
    return None


def _from_mapping(value: dict) -> Verdict:
    fields = {str(k).strip().lower(): v for k, v in value.items()}
    raw = next((fields[k] for k in ("answer", "verdict", "result") if k in fields), None)
    reason = _clip(fields.get("reason", fields.get("explanation", "")))
    if isinstance(raw, bool):
        return Verdict("yes" if raw else "no", reason)
    if isinstance(raw, str):
        word = raw.strip().strip(".!").lower()
        if word in _YES:
            return Verdict("yes", reason)
        if word in _NO:
            return Verdict("no", reason)
        leading = _LEADING.match(raw)  # "Yes, someone is on the fence"
        if leading:
            return Verdict(leading.group(1).lower(), reason or _clip(leading.group(2)))  # type: ignore[arg-type]
        return Verdict("unknown", reason, f"answer is {_clip(raw)!r}, not yes or no")
    return Verdict("unknown", reason, "no 'answer' field" if raw is None else f"answer is {type(raw).__name__}")


def parse_answer(text: Optional[str]) -> Verdict:
    """The verdict in a model's reply; `unknown` (with `error`) when there is none."""
    if text is None or not str(text).strip():
        return Verdict("unknown", "", "empty answer")
    text = str(text).strip()
    fenced = _FENCE.findall(text)
    candidates = [c for block in fenced for c in _objects(block)] + _objects(text)
    failure = None
    for span in candidates:
        value = _load(span)
        if value is None:
            failure = failure or "malformed JSON"
            continue
        verdict = _from_mapping(value)
        if verdict.known:
            return verdict
        failure = failure or verdict.error
    field = _ANSWER_FIELD.search(text)
    if field:
        return Verdict(field.group(1).lower(), "")  # type: ignore[arg-type]
    # No usable JSON: a reply that starts with yes/no ("Yes. A man climbs ...") still says it,
    # unless the rest says the opposite too ("Yes and no, ...").
    plain = _FENCE.sub(lambda m: m.group(1), text)
    has_yes, has_no = bool(_WORD_YES.search(plain)), bool(_WORD_NO.search(plain))
    match = _LEADING.match(plain)
    if match:
        word, rest = match.group(1).lower(), match.group(2)
        opposite = _WORD_NO if word == "yes" else _WORD_YES
        if not opposite.search(rest):
            return Verdict(word, _clip(rest))  # type: ignore[arg-type]
        return Verdict("unknown", "", "both yes and no in the answer")
    if has_yes != has_no and not candidates:
        return Verdict("yes" if has_yes else "no", _clip(plain))
    return Verdict("unknown", "", failure or "no yes/no answer found")


# -- the joint answer: the caption and every rule's verdict in one model call (issue 22) ----------
#
# The prompt asks for fixed lines, the verdicts first (so they can be parsed as they stream and
# the alert go out before the caption is decoded), then the caption:
#
#     fence: no
#     person: yes
#     caption: A man in a red coat walks to the door.
#
# A rule whose line is missing, repeated with both answers, or says neither yes nor no is
# `unknown` (counted, changes nothing: never a false clear). The caption is the text after
# `caption:`; without that label, every line that is not a verdict line.

CAPTION_LABEL = "caption"
WORDS_PER_TOKEN = 0.75  # the budget is asked for in words, which a model understands


def caption_words(caption_tokens: int) -> int:
    return max(5, int(caption_tokens * WORDS_PER_TOKEN))


def joint_prompt(prompt: str, questions: Mapping[str, str], caption_tokens: int) -> str:
    """The user prompt of the joint call: the source's prompt with the caption's length budget,
    and, when there are rules, the questions and the fixed answer lines (`questions`: rule name
    -> its yes/no question, in config order)."""
    budget = f"{prompt.rstrip()} Use at most {caption_words(caption_tokens)} words."
    if not questions:
        return budget
    names = list(questions)
    lines = [budget, "Also answer each question below with yes or no.", "Questions:"]
    lines += [f"{name}: {' '.join(question.split())}" for name, question in questions.items()]
    lines += ["Reply in exactly this form, one line each, the answers first and the description last:"]
    lines += [f"{name}: yes or no" for name in names]
    lines += [f"{CAPTION_LABEL}: <the description>"]
    return "\n".join(lines)


def _line_pattern(name: str) -> re.Pattern:
    return re.compile(rf"^[\s>*#`'\"-]*{re.escape(name)}[\s*`'\"]*[:=-]\s*(.*)$", re.I | re.M)


_CAPTION_LINE = re.compile(rf"^[\s>*#`'\"-]*{CAPTION_LABEL}[\s*`'\"]*:\s*", re.I | re.M)


def _verdict_of(value: str) -> Verdict:
    match = _LEADING.match(value.strip().strip("*`'\""))
    if match is None:
        return Verdict("unknown", "", f"the line says {_clip(value)!r}, not yes or no")
    word, rest = match.group(1).lower(), match.group(2)
    opposite = _WORD_NO if word == "yes" else _WORD_YES
    if opposite.search(rest):
        return Verdict("unknown", "", "both yes and no on the line")
    return Verdict(word, _clip(rest))  # type: ignore[arg-type]


def parse_verdict_lines(text: str, names: Sequence[str]) -> dict[str, Verdict]:
    """Each rule's verdict from its `name: yes|no` line; `unknown` (with `error`) when the line
    is missing, says neither, or two lines of that rule disagree."""
    out: dict[str, Verdict] = {}
    for name in names:
        found = [_verdict_of(m.group(1)) for m in _line_pattern(name).finditer(text or "")]
        known = {v.answer for v in found if v.known}
        if not found:
            out[name] = Verdict("unknown", "", f"no '{name}:' line in the answer")
        elif len(known) > 1:
            out[name] = Verdict("unknown", "", f"'{name}:' answered both yes and no")
        else:
            out[name] = next((v for v in found if v.known), found[0])
    return out


def parse_joint(text: str, names: Sequence[str]) -> tuple[str, dict[str, Verdict]]:
    """(caption, {rule: verdict}) from a joint answer."""
    text = (text or "").strip()
    verdicts = parse_verdict_lines(text, names)
    label = _CAPTION_LINE.search(text)
    if label is not None:
        caption = text[label.end():].strip()
    else:
        patterns = [_line_pattern(name) for name in names]
        caption = "\n".join(line for line in text.splitlines()
                            if not any(p.match(line) for p in patterns)).strip()
    return " ".join(caption.split()), verdicts


class VerdictStream:
    """Watches a joint answer as it is decoded, token by token (`feed`), and says when every rule's
    verdict line is complete: then `ready` is True and `verdicts` holds them (the caption follows).
    `decode(ids)` turns the token ids so far into text."""

    def __init__(self, names: Sequence[str], decode: Callable[[Sequence[int]], str]):
        self.names = list(names)
        self.decode = decode
        self.ids: list[int] = []
        self.verdicts: dict[str, Verdict] = {}
        self.ready = not self.names

    def feed(self, token_id: int) -> bool:
        """True once, when the verdicts have just become complete."""
        if self.ready:
            return False
        self.ids.append(int(token_id))
        text = self.decode(self.ids)
        # complete: every rule has a line that a newline ends, or the caption has begun
        done = text.rsplit("\n", 1)[0] if "\n" in text else ""
        if _CAPTION_LINE.search(text) is None and not all(_line_pattern(n).search(done) for n in self.names):
            return False
        self.verdicts = parse_verdict_lines(text, self.names)
        self.ready = True
        return True
