"""Keyword and regex rules on the caption text: a cheap alternative to asking the model.

Keywords match whole words or phrases (so "car" does not fire on "carpet"); a pattern is searched
as written. Both ignore case unless the rule says otherwise. They see only the caption, so a
caption like "no person is visible" still matches "person": use a question rule when negation
matters.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .answers import Verdict

if TYPE_CHECKING:  # pragma: no cover
    from ..config.rules import RuleConfig


class TextMatcher:
    def __init__(self, rule: "RuleConfig"):
        flags = re.IGNORECASE if rule.ignore_case else 0
        if rule.keywords:
            # Phrases may be written with any spacing; \b only where the keyword starts/ends with a word char.
            parts = []
            for keyword in rule.keywords:
                body = r"\s+".join(re.escape(word) for word in keyword.split())
                left = r"\b" if keyword[0].isalnum() or keyword[0] == "_" else ""
                right = r"\b" if keyword[-1].isalnum() or keyword[-1] == "_" else ""
                parts.append(f"{left}{body}{right}")
            self.regex = re.compile("|".join(parts), flags)
            self.kind = "keywords"
        elif rule.pattern is not None:
            self.regex = re.compile(rule.pattern, flags)
            self.kind = "pattern"
        else:
            raise ValueError(f"rule {rule.name} has neither keywords nor pattern")

    def match(self, text: str) -> Verdict:
        found = self.regex.search(text or "")
        if found:
            return Verdict("yes", f"caption mentions {found.group(0)!r}")
        return Verdict("no", "")
