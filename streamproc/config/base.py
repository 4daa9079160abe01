"""The base of every config section: unknown keys are errors, values are checked strictly enough."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section. Unknown keys are rejected so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)


def parse_pixels(value: object) -> object:
    """Accept 'HxW' (e.g. '672x896'), [H, W] or a plain pixel count; return the pixel count."""
    if isinstance(value, str):
        text = value.lower().replace(" ", "")
        if "x" in text:
            height, _, width = text.partition("x")
            if not (height.isdigit() and width.isdigit()):
                raise ValueError(f"expected HEIGHTxWIDTH such as 672x896, got {value!r}")
            return int(height) * int(width)
        if text.isdigit():
            return int(text)
        raise ValueError(f"expected HEIGHTxWIDTH such as 672x896 or a pixel count, got {value!r}")
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or not all(isinstance(v, int) for v in value):
            raise ValueError(f"expected [height, width], got {value!r}")
        return int(value[0]) * int(value[1])
    return value


def safe_name(value: str, what: str) -> str:
    """`value` if it can name a folder, a file and an MQTT topic level; ValueError (one line) if not.
    Names become paths (attachments/<source>/...) and topics: no separators, no `.` or `..`, no
    control characters, no wildcards."""
    bad = sorted({c for c in value if c in "/\\+#" or ord(c) < 32 or ord(c) == 127})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ValueError(f"a {what} name cannot hold {shown} (it names folders, files and MQTT topics)")
    if value in (".", ".."):
        raise ValueError(f"a {what} name cannot be {value!r} (it names folders on disk)")
    if value != value.strip():
        raise ValueError(f"a {what} name cannot start or end with a space")
    return value
