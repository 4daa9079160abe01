"""Errors in OpenAI's JSON shape: {"error": {"message", "type", "param", "code"}}.

Clients (the official SDKs, Home Assistant, Frigate) read `error.message` and pick a behaviour
from the status code: 400 is the caller's fault and not retried, 429 and 5xx are retried.
"""
from __future__ import annotations

from typing import Any, Optional

from ..errors import BackendError, InputTooLarge, MediaError, ModelError, StreamprocError
from ..redact import redact


class ApiError(Exception):
    """An error answer: the HTTP status and OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: Optional[str] = None,
        code: Optional[str] = None,
        headers: Optional[dict[str, str]] = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = " ".join(redact(str(message)).split())
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: Optional[str] = None, code: Optional[str] = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", param, code)


def from_streamproc(error: StreamprocError) -> ApiError:
    """The API's answer for one of streamproc's typed errors raised while serving a request."""
    if isinstance(error, InputTooLarge):
        return ApiError(400, str(error), "invalid_request_error", "messages", "context_length_exceeded")
    if isinstance(error, MediaError):
        return ApiError(400, str(error), "invalid_request_error", "messages", "invalid_image")
    if isinstance(error, ModelError):  # about this request's input (frame sizes, special tokens)
        return ApiError(400, str(error), "invalid_request_error", "messages", None)
    if isinstance(error, BackendError):
        status = 503 if error.retryable else 500
        return ApiError(status, f"the model failed: {error}", "server_error", None, None)
    return ApiError(500, str(error), "server_error")
