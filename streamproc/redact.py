"""Keep credentials out of logs, errors and events: redaction by parsing, not by pattern.

PyAV and FFmpeg put the whole URL, password included, into their error messages, and FFmpeg
accepts a password with unencoded `@`, `/`, `:` and the like: `rtsp://admin:p@ss/w:rd@cam/s`
has the password `p@ss/w:rd`. So the userinfo of a URL is everything between `://` and the LAST
`@` of the URL (a URL in running text ends at whitespace); it is masked whole, whatever it holds.

One rule for every URL the project prints: its userinfo and the value of every query parameter
are masked (`https://***@host/hook?access_token=***&sig=***`). Signed URLs carry their secrets
under any name (`sig`, `X-Amz-Signature`, `code`), so no list of secret names is kept for URLs.

Two layers, so that a new error path cannot forget:
- every password streamproc is given (camera URLs, the MQTT password, a webhook URL's userinfo
  and query values, API keys) is registered with `register_url` / `register_secret` when its
  config is used, and masked wherever it appears, raw or percent-encoded, even outside a URL;
- `redact` masks the userinfo and query values of every `scheme://...` in the text, and
  `name=value` pairs with secret-looking names outside URLs.

One redaction point for logs: `RedactingFilter`, installed on the root handler by the CLI's
logging set-up (message, arguments and traceback text). Events are redacted where they are
built (`streamproc.events.Event`).
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Optional
from urllib.parse import quote, unquote

MASK = "***"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_SECRET_PARAM = re.compile(r"(?i)([?&;](?:password|passwd|pwd|pass|token|secret|auth|key|apikey|api_key)=)[^&\s'\"]+")
_QUERY_VALUE = re.compile(r"([?&;][^=&;#\s'\"<>]*=)[^&;#\s'\"<>)\]]+")  # in a URL's part after its host
_MIN_SECRET = 3  # shorter "secrets" (a, 12) would mask unrelated text; their URL form is still masked
_MIN_QUERY_SECRET = 8  # query values registered as secrets: shorter ones (json, 1, en) are everyday words

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_ordered: tuple[str, ...] = ()


def split_url(url: str) -> tuple[str, Optional[str], str]:
    """(scheme with '://', userinfo or None, the rest) of `url`; userinfo ends at the LAST '@'.

    A location without '://' has no scheme: ("", None, url)."""
    match = _SCHEME.match(url)
    if not match:
        return "", None, url
    scheme, rest = match.group(0), url[match.end():]
    at = rest.rfind("@")
    if at < 0:
        return scheme, None, rest
    return scheme, rest[:at], rest[at + 1:]


def url_scheme(location: str) -> Optional[str]:
    """The lower-case scheme of a location with '://' ('rtsp'), else None (a file path)."""
    match = _SCHEME.match(location.strip())
    return match.group(0)[:-3].lower() if match else None


def url_host(url: str) -> Optional[str]:
    """The host of a URL (credentials, port and path stripped), or None."""
    scheme, _, rest = split_url(url)
    if not scheme:
        return None
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if authority.startswith("["):  # [ipv6]:port
        return authority[1:].split("]", 1)[0] or None
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority or None


def _mask_userinfo(userinfo: str) -> str:
    user, sep, _ = userinfo.partition(":")
    return f"{user}:{MASK}" if sep else MASK


def _mask_query(rest: str) -> str:
    """The part of a URL after its userinfo with every query value masked."""
    query = rest.find("?")
    if query < 0:
        return rest
    return rest[:query] + _QUERY_VALUE.sub(rf"\1{MASK}", rest[query:])


def redact_url(url: str) -> str:
    """`url` as it may be shown: its password (or whole userinfo when there is no ':') and the
    value of every query parameter masked."""
    scheme, userinfo, rest = split_url(url)
    if not scheme:
        return _SECRET_PARAM.sub(rf"\1{MASK}", url)
    masked = f"{_mask_userinfo(userinfo)}@" if userinfo is not None else ""
    return f"{scheme}{masked}{_mask_query(rest)}"


def register_secret(secret: Optional[str]) -> None:
    """Mask `secret` (and its percent-encoded forms) wherever it appears from now on."""
    if not secret or len(secret) < _MIN_SECRET:
        return
    global _ordered
    forms = {secret, quote(secret, safe=""), quote(secret, safe="@:/"), unquote(secret)}
    with _secrets_lock:
        _secrets.update(f for f in forms if len(f) >= _MIN_SECRET)
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))  # longest first: no half masks


def register_url(url: Optional[str], query_values: bool = False) -> None:
    """Register the password (or token-like userinfo) of a configured URL, and with
    `query_values` its query values long enough to be secrets (a webhook's signature or token),
    so they are masked even outside the URL. A camera's query values (`subtype=mainstream`) are
    not registered: they are words that may appear in captions; in a URL they are masked anyway."""
    if not url:
        return
    _, userinfo, rest = split_url(url)
    if userinfo:
        user, sep, password = userinfo.partition(":")
        register_secret(password if sep else user)
    if not query_values:
        return
    query = rest.partition("?")[2].partition("#")[0]
    for pair in re.split(r"[&;]", query):
        value = pair.partition("=")[2]
        if len(value) >= _MIN_QUERY_SECRET:
            register_secret(value)


def _mask_urls(text: str) -> str:
    out: list[str] = []
    pos = 0
    for match in _SCHEME.finditer(text):
        if match.start() < pos:
            continue  # inside a URL already handled
        end = match.end()
        stop = end
        while stop < len(text) and not text[stop].isspace():
            stop += 1
        token = text[end:stop]
        at = token.rfind("@")
        out.append(text[pos:end])
        if at >= 0:
            out.append(_mask_userinfo(token[:at]) + "@" + _mask_query(token[at + 1:]))
        else:
            out.append(_mask_query(token))
        pos = stop
    out.append(text[pos:])
    return "".join(out)


def redact(text: object) -> str:
    """`text` with registered secrets, every URL's userinfo and query values, and secret-looking
    `name=value` pairs masked."""
    result = str(text)
    for secret in _ordered:
        if secret in result:
            result = result.replace(secret, MASK)
    if "://" in result:
        result = _mask_urls(result)
    if "=" in result:
        result = _SECRET_PARAM.sub(rf"\1{MASK}", result)
    return result


class RedactingFilter(logging.Filter):
    """Masks credentials in every record's final message and traceback text.

    Installed on the root handler (`streamproc.cli.common.setup_logging`): every record that is
    written passes through it, whichever logger or library made it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw parts, redacted
            message = f"{record.msg} {record.args}"
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
