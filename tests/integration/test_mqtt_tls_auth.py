"""TLS with a CA and certificates made in the test, username/password auth: the right credentials
work; refused ones are reported as one clear line; the password never shows up in logs."""
from __future__ import annotations

import logging

import pytest

from streamproc.errors import SinkError
from streamproc.events import caption_event, validate
from tests.integration.conftest import mqtt_section

pytest.importorskip("cryptography", reason="test certificates need cryptography (the dev extra)")
from tests.support.certs import make_pki  # noqa: E402
from tests.support.segments import make_result, make_segment

pytestmark = pytest.mark.integration

PASSWORD = "Tr0ub4dor-and-3"
WRONG = "not-the-Password-9"


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki")


@pytest.fixture
def secure_broker(make_broker, pki):
    return make_broker(tls=pki, require_certificate=True, users={"streamproc": PASSWORD, "watcher": "watch-pw"})


def tls_options(pki, *, client_cert: bool = True, ca_file=None) -> dict:
    tls = {"enabled": True, "ca_file": str(ca_file or pki.ca_file)}
    if client_cert:
        tls.update(cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    return tls


def watcher(subscribe, server, pki):
    return subscribe(
        server.port, ["sp/#"], ca_file=pki.ca_file, cert_file=pki.client_cert, key_file=pki.client_key,
        username="watcher", password="watch-pw",
    )


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_tls_client_certificate_and_password(secure_broker, pki, subscribe, start_sink, caplog, protocol):
    caplog.set_level(logging.DEBUG)
    sub = watcher(subscribe, secure_broker, pki)
    sink = start_sink(
        secure_broker,
        mqtt={"protocol": protocol, "tls": tls_options(pki), "username": "streamproc", "password": PASSWORD},
    )
    assert sink.wait_connected(10)
    events = [caption_event(make_segment("cam1", i), make_result(f"secure {i}")) for i in range(3)]
    for event in events:
        sink.handle(event)
    assert sink.flush(10)
    got = sub.wait_count("sp/cam1/captions", 3, 5)
    assert [m.json() for m in got] == [e.to_dict() for e in events]
    for message in got:
        validate(message.json())
    sink.stop(5)
    assert PASSWORD not in caplog.text
    assert "connected to 127.0.0.1" in caplog.text


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
@pytest.mark.parametrize("credentials", [{}, {"username": "streamproc", "password": WRONG}, {"username": "nobody"}])
def test_refused_credentials_are_one_clear_line_without_the_password(
    secure_broker, pki, start_sink, caplog, protocol, credentials
):
    caplog.set_level(logging.DEBUG)
    sink = start_sink(secure_broker, mqtt={"protocol": protocol, "tls": tls_options(pki), **credentials})
    with pytest.raises(SinkError) as info:
        sink.wait_connected(10)
    message = str(info.value)
    assert "\n" not in message and not info.value.retryable
    assert f"127.0.0.1:{secure_broker.port} refused the connection" in message
    assert "not authori" in message.lower() or "bad user name or password" in message.lower()
    assert "check sinks.mqtt.username / password" in message
    # events keep going into the outbox meanwhile; nothing is lost by a wrong password
    sink.handle(caption_event(make_segment("cam1", 0), make_result()))
    assert sink.outbox.count() >= 1 and not sink.connected
    # retried with backoff, but the error is logged once, not once per attempt
    import time

    deadline = time.monotonic() + 10
    while sink.publisher._attempts < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sink.publisher._attempts >= 3
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "refused" in r.getMessage()]
    assert len(errors) == 1
    for secret in (PASSWORD, WRONG):
        assert secret not in caplog.text and secret not in message


def test_unknown_ca_is_reported_clearly(secure_broker, pki, tmp_path, start_sink):
    other = make_pki(tmp_path / "other-pki", ca_name="someone else's CA")
    sink = start_sink(
        secure_broker,
        mqtt={"tls": tls_options(pki, ca_file=other.ca_file), "username": "streamproc", "password": PASSWORD},
    )
    with pytest.raises(SinkError, match=r"TLS handshake with 127\.0\.0\.1:\d+ failed: .*certificate.* \(check sinks\.mqtt\.tls\.ca_file and sinks\.mqtt\.host\)"):
        sink.wait_connected(10)


def test_missing_tls_files_fail_at_start(secure_broker, pki, tmp_path):
    from streamproc.config.sinks import SinksConfig
    from streamproc.sinks.mqtt import MqttSink

    section = mqtt_section(secure_broker, tmp_path, mqtt={"tls": {"enabled": True, "ca_file": str(tmp_path / "nope.pem")}})
    config = SinksConfig.model_validate(section)
    sink = MqttSink(config.mqtt, config.outbox)
    with pytest.raises(SinkError, match=r"sinks\.mqtt\.tls\.ca_file .*nope\.pem: no such file"):  # the file, named
        sink.start()
    # the outbox was released: a fixed config can start in the same process
    from streamproc.sinks.outbox import Outbox

    Outbox(config.outbox.path).close()


def test_password_stays_out_of_a_child_process_log(secure_broker, pki, child_process, tmp_path):
    config = mqtt_section(
        secure_broker, tmp_path, mqtt={"tls": tls_options(pki), "username": "streamproc", "password": WRONG}
    )
    child = child_process(config, "--wait-connected", "10", "--count", "2", "--mode", "flush", "--flush-timeout", "1")
    line = child.expect("refused")
    assert "refused the connection" in line and WRONG not in line
    child.expect("closed")
    log = child.stderr()
    assert "refused the connection" in log and "DEBUG" in log  # it logged, at debug level too
    assert WRONG not in log and WRONG not in "\n".join(child.lines)
