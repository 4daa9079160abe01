"""Turn PyAV / FFmpeg / OS exceptions into streamproc's typed, credential-free source errors."""
from __future__ import annotations

import errno
import socket

import av

from ..errors import MediaError, SourceAuthError, SourceError, SourceNotFound, SourceUnreachable
from ..redact import redact, redact_url, url_host, url_scheme

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


def unresolvable(location: str) -> str | None:
    """The host of URL `location` if the resolver does not know it (FFmpeg says only EIO)."""
    host = url_host(location)
    if not host:
        return None
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return host
    except OSError:
        return None
    return None


def classify(exc: BaseException, name: str, location: str, live: bool) -> SourceError:
    """A SourceError for `exc` raised while opening or reading source `name` at `location`."""
    where = f"{name}: {redact_url(location)}"
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, av.error.ProtocolNotFoundError):
        scheme = url_scheme(location)
        what = f"unknown URL scheme '{scheme}://'" if scheme else "unsupported URL scheme"
        return SourceError(f"{where}: {what} (FFmpeg has no such protocol; rtsp://, http://, a file path?)")
    # FFmpeg reports a name that does not resolve as EIO (http) or EINVAL (rtsp): ask the resolver.
    if getattr(exc, "errno", None) in (errno.EIO, errno.EINVAL) and url_scheme(location):
        host = unresolvable(location)
        if host is not None:
            # DNS may come back (a camera's name not yet registered): retryable for live sources
            return SourceUnreachable(f"{where}: cannot resolve the host name '{host}'", retryable=live)
    if isinstance(exc, av.error.HTTPUnauthorizedError) or isinstance(exc, av.error.HTTPForbiddenError):
        return SourceAuthError(f"{where}: the server refused the credentials ({_reason(exc)})")
    if isinstance(exc, (av.error.FileNotFoundError, FileNotFoundError)) and not live:
        return SourceNotFound(f"{where}: no such file")
    if isinstance(exc, (av.error.PermissionError, PermissionError)) and not live:
        return SourceError(f"{where}: permission denied")
    if isinstance(exc, (av.error.IsADirectoryError, IsADirectoryError)):
        return SourceError(f"{where}: is a directory, not a video file")
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
