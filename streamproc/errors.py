"""Typed errors. Each says whether retrying can help and has a one-line user message.

Every error raised on purpose by streamproc derives from StreamprocError. The CLI prints
`str(error)` (one line, credentials already redacted) and exits with `error.exit_code`;
stages decide whether to back off and retry by `error.retryable`.
"""
from __future__ import annotations


class StreamprocError(Exception):
    """Base of every error streamproc raises on purpose."""

    retryable: bool = False
    exit_code: int = 1

    def __init__(self, message: str, *, retryable: bool | None = None):
        # One line: the CLI prints it as is, and events/logs carry it.
        super().__init__(" ".join(str(message).split()))
        if retryable is not None:
            self.retryable = retryable

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(StreamprocError):
    """The configuration is invalid (unknown key, wrong type, missing field, bad value)."""

    exit_code = 2


class UsageError(StreamprocError):
    """The command line asks for something that cannot be done."""

    exit_code = 2


class SourceError(StreamprocError):
    """A video source cannot be opened or read."""

    exit_code = 3


class SourceNotFound(SourceError):
    """A file source does not exist."""


class SourceUnreachable(SourceError):
    """A network source did not answer or dropped; it may come back."""

    retryable = True


class SourceAuthError(SourceError):
    """The server refused the credentials. Retrying with the same ones will not help."""


class MediaError(SourceError):
    """The file or stream is not a readable video (empty, corrupt, truncated, no video track)."""


class ModelError(StreamprocError):
    """A model cannot be loaded or does not match what the pipeline needs."""

    exit_code = 4


class InputTooLarge(ModelError):
    """The input does not fit the model (sequence length, patches, prompt budget)."""


class BackendError(StreamprocError):
    """A backend failed while running a request."""

    exit_code = 5
    retryable = True


class DeviceError(BackendError):
    """The accelerator runtime failed (runtime missing, wrong chip, device call failed)."""

    retryable = False


class Aborted(BackendError):
    """backend.abort() stopped the request (on stop, or because it was stuck). Retrying the
    same request is the caller's decision, not a recovery from a fault: not retryable."""

    retryable = False


class SinkError(StreamprocError):
    """An event sink could not deliver; delivery is retried from the outbox."""

    exit_code = 6
    retryable = True
