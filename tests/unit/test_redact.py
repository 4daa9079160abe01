"""Redaction by parsing: the userinfo of a URL ends at its LAST '@', whatever the password holds."""
from __future__ import annotations

import logging
import string

import pytest

from streamproc import redact as redact_module
from streamproc.events import status_event, stats_event
from streamproc.redact import RedactingFilter, redact, redact_url, register_url, split_url, url_host, url_scheme

# Every character RFC 3986 gives a meaning in a URL, plus a few more, unencoded as FFmpeg takes them.
URL_SPECIAL = ":/?#[]@!$&'()*+,;=%\"<>\\^`{|}~"
PASSWORDS = [
    "p@ss",
    "p/ss",
    "pa:ss",
    "a@b@c",
    "x/y@z:w",
    URL_SPECIAL,
    "S3cr" + URL_SPECIAL + "t",
    *[f"pw{ch}rd{ch}9" for ch in URL_SPECIAL],
]


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_password_of_a_url_is_masked_whatever_it_contains(password):
    url = f"rtsp://admin:{password}@192.0.2.10:554/stream1"
    masked = redact_url(url)
    assert masked == "rtsp://admin:***@192.0.2.10:554/stream1"
    # and in running text, in quotes, after a colon, as FFmpeg and our errors write it
    for text in (f"cannot open {url}: Connection refused", f"'{url}'", f"cam1: {url}: timed out"):
        out = redact(text)
        assert "192.0.2.10:554/stream1" in out
        assert password not in out.replace("***", ""), out


def test_a_mistyped_or_unknown_scheme_is_still_a_url():
    assert redact_url("rstp://u:p@ss/w@h/x") == "rstp://u:***@h/x"
    assert redact("foo://u:p/w@h/x: no such file") == "foo://u:***@h/x: no such file"
    assert url_scheme("rstp://u:p@h/x") == "rstp"
    assert url_scheme("/videos/a.mp4") is None


def test_split_url_and_host():
    assert split_url("rtsp://u:a@b/c@cam:554/s") == ("rtsp://", "u:a@b/c", "cam:554/s")
    assert split_url("/a/b@c.mp4") == ("", None, "/a/b@c.mp4")
    assert url_host("rtsp://u:p@ss@cam.local:554/s") == "cam.local"
    assert url_host("rtsp://[::1]:554/s") == "::1"


def test_a_token_without_a_user_and_secret_parameters_are_masked():
    assert redact_url("https://TOKEN123@example.com/x") == "https://***@example.com/x"
    assert redact("GET /x?user=a&password=hunter22&x=1") == "GET /x?user=a&password=***&x=1"


def test_registered_secrets_are_masked_outside_urls_too(monkeypatch):
    monkeypatch.setattr(redact_module, "_secrets", set())
    monkeypatch.setattr(redact_module, "_ordered", ())
    register_url("rtsp://admin:we ird@pa ss@cam/x")  # a space ends a URL in text: the registry still knows
    assert "we ird@pa ss" not in redact("open failed for password we ird@pa ss")
    assert "we%20ird%40pa%20ss" not in redact("sent as we%20ird%40pa%20ss, percent-encoded")


def test_the_logging_filter_redacts_messages_arguments_and_tracebacks():
    url = "rtsp://admin:t0p@s/ecret@cam/x"
    handler_records = []

    class Keep(logging.Handler):
        def emit(self, record):
            handler_records.append(self.format(record))

    handler = Keep()
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("cannot open %s", url)
        try:
            raise OSError(f"Input/output error: '{url}'")
        except OSError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = "\n".join(handler_records)
    assert "t0p@s/ecret" not in text and "t0p" not in text
    assert "rtsp://admin:***@cam/x" in text
    assert "Traceback" in text  # the traceback is kept, only the secret goes


def test_every_event_is_redacted_where_it_is_made():
    url = "rtsp://admin:p@ss/w:rd@cam/x"
    status = status_event("cam1", "offline", f"cannot open {url}")
    stats = stats_event({"sources": {"cam1": {"error": f"cam1: {url}: refused"}}})
    for event in (status, stats):
        assert "p@ss/w:rd" not in event.to_json()
        assert "rtsp://admin:***@cam/x" in event.to_json()


def test_redaction_leaves_plain_text_alone():
    text = "a person walks past the door at 12:30; see https://example.com/docs"
    assert redact(text) == text
    assert set(string.ascii_letters) <= set(redact(string.ascii_letters))


def test_every_query_value_of_a_url_is_masked_whatever_its_name():
    url = "https://u:pw@hooks.example/in?access_token=AT1&sig=SG2&X-Amz-Signature=AZ3&code=CD4&format=json#top"
    assert redact_url(url) == ("https://u:***@hooks.example/in?access_token=***&sig=***&X-Amz-Signature=***"
                               "&code=***&format=***#top")
    text = redact(f"webhook {url} answered 503")
    assert all(secret not in text for secret in ("AT1", "SG2", "AZ3", "CD4", "pw@"))
    assert text.endswith(" answered 503") and "hooks.example/in?" in text


def test_query_values_are_registered_only_when_asked(monkeypatch):
    monkeypatch.setattr(redact_module, "_secrets", set())
    monkeypatch.setattr(redact_module, "_ordered", ())
    register_url("rtsp://cam/stream?subtype=mainstream")  # a camera: its words stay words
    assert redact("the mainstream view") == "the mainstream view"
    register_url("https://h/x?sig=abcdef123456", query_values=True)  # a webhook: its signature is a secret
    assert redact("signed abcdef123456") == "signed ***"
