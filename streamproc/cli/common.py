"""Shared CLI plumbing: logging set-up and small argument helpers."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from ..redact import RedactingFilter


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("source", "segment", "rule"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_text or record.exc_info:  # exc_text: already redacted by RedactingFilter
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(verbosity: int, log_format: str = "text") -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if log_format == "json":
        handler.setFormatter(JsonLineFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        formatter.converter = time.localtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("streamproc").setLevel(level)
    # FFmpeg's own log goes through PyAV's logging bridge; keep it quiet unless debugging.
    logging.getLogger("libav").setLevel(logging.ERROR if verbosity < 2 else logging.INFO)


def quiet_simulator_if_used(config) -> None:
    """The TPU simulator prints debug lines on C stdout; keep them off the CLI's output."""
    if config.backend is not None and config.backend.type == "tpu":
        quiet_simulator(config.backend.runtime_dir)


def quiet_simulator(runtime_dir) -> None:
    """Load the Sophgo runtime now and, if it is the CPU simulator, silence its C stdout."""
    from ..backends.tpu import quiet_simulator as quiet

    quiet(runtime_dir)  # a runtime that does not load: starting the backend reports it properly


class HelpFormatter(argparse.HelpFormatter):
    """Every option's default shown after its help (unless the help already says it, or there is
    none to show); one-paragraph descriptions wrapped, text with line breaks (examples) kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text.lower()
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or (isinstance(default, list) and not default)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"
