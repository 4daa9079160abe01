"""Turn PyAV / FFmpeg / OS exceptions into streamproc's typed, credential-free source errors."""
from __future__ import annotations

import errno

import av

from ..errors import MediaError, SourceAuthError, SourceError, SourceNotFound, SourceUnreachable
from ..redact import redact

_UNREACHABLE_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ETIMEDOUT,
    errno.EPIPE,
    errno.EIO,
}


def _reason(exc: BaseException) -> str:
    # FFmpegError.strerror is the bare reason; str(exc) would repeat the URL (password included).
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return redact(reason)


def classify(exc: BaseException, name: str, location: str, live: bool) -> SourceError:
    """A SourceError for `exc` raised while opening or reading source `name` at `location`."""
    where = f"{name}: {redact(location)}"
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, av.error.HTTPUnauthorizedError) or isinstance(exc, av.error.HTTPForbiddenError):
        return SourceAuthError(f"{where}: the server refused the credentials ({_reason(exc)})")
    if isinstance(exc, (av.error.FileNotFoundError, FileNotFoundError)) and not live:
        return SourceNotFound(f"{where}: no such file")
    if isinstance(exc, (av.error.PermissionError, PermissionError)) and not live:
        return SourceError(f"{where}: permission denied")
    if isinstance(exc, (av.error.IsADirectoryError, IsADirectoryError)):
        return SourceError(f"{where}: is a directory, not a video file")
    if isinstance(exc, (av.error.ProtocolNotFoundError,)):
        return SourceError(f"{where}: unsupported URL scheme ({_reason(exc)})")
    if live:
        if isinstance(exc, av.error.HTTPNotFoundError):
            return SourceUnreachable(f"{where}: the stream does not exist on the server ({_reason(exc)})")
        if isinstance(exc, (av.error.TimeoutError, TimeoutError, av.error.ExitError)):
            return SourceUnreachable(f"{where}: timed out ({_reason(exc)})")
        code = getattr(exc, "errno", None)
        if code in _UNREACHABLE_ERRNOS or isinstance(exc, (ConnectionError, av.error.EOFError, OSError)):
            return SourceUnreachable(f"{where}: unreachable ({_reason(exc)})")
        return SourceUnreachable(f"{where}: stream failed ({_reason(exc)})")
    if isinstance(exc, (av.error.InvalidDataError, av.error.DemuxerNotFoundError)):
        return MediaError(f"{where}: not a readable video file ({_reason(exc)})")
    if isinstance(exc, av.error.DecoderNotFoundError):
        return MediaError(f"{where}: no decoder for this video codec ({_reason(exc)})")
    return MediaError(f"{where}: cannot read ({_reason(exc)})")
