"""What the config can know, checked when it is read: URL schemes, host and URL forms (the schema),
and what the machine must give it (config/checks.py): source files, writable folders, TLS files.
The CLI side (exit 2 before the model) is in tests/integration/test_bad_inputs.py."""
from __future__ import annotations

import pytest

from streamproc.config import ConfigError, config_from_text, load_config
from streamproc.config.checks import check_config, folder_problem


def source(url: str) -> str:
    return f"sources:\n  - name: a\n    url: '{url}'\nsinks: {{stdout: {{enabled: true}}}}\n"


@pytest.mark.parametrize("url", ["rtsp://h/s", "rtsps://h/s", "rtmp://h/s", "http://h/v.mp4", "https://h/v.m3u8",
                                 "udp://239.0.0.1:5000", "srt://h:9000", "file:///v/a.mp4", "RTSP://H/s"])
def test_known_schemes_are_accepted(url):
    assert config_from_text(source(url)).sources[0].url == url


@pytest.mark.parametrize("url, says", [
    ("foo://u:Secret9@h/x", "unknown URL scheme 'foo://' (streamproc reads"),
    ("rstp://admin:Secret9@cam/s", "unknown URL scheme 'rstp://' (did you mean rtsp://?"),
    ("htps://u:Secret9@h/x", "(did you mean https://?"),
])
def test_unknown_schemes_are_config_errors_without_the_url(url, says):
    with pytest.raises(ConfigError) as caught:
        config_from_text(source(url), "cam.yaml")
    message = str(caught.value)
    assert message.startswith("cam.yaml:3: sources[0].url: ") and says in message
    assert "Secret9" not in message and "\n" not in message


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "broker.lan", "mosquitto_1", "b-1.example.com."])
def test_mqtt_hosts(host):
    config = config_from_text(f"sinks:\n  mqtt: {{host: '{host}'}}\n")
    assert config.sinks.mqtt.host == host


@pytest.mark.parametrize("host, says", [
    ("mqtt://broker", "without a scheme"),
    ("broker:1883", "give the port as sinks.mqtt.port: 1883"),
    ("my broker", "not a host name or an IP address"),
    ("broker/x", "not a host name"),
    ("", "not a host name"),
])
def test_mqtt_host_forms_refused(host, says):
    with pytest.raises(ConfigError, match=r"sinks\.mqtt\.host: .*" + says.replace("(", r"\(")):
        config_from_text(f"sinks:\n  mqtt: {{host: '{host}'}}\n")


@pytest.mark.parametrize("url, says", [
    ("http://h:99999/hook", "not a well-formed URL"),
    ("http://:80/hook", "no host name"),
    ("ftp://h/hook", "http://"),
])
def test_webhook_urls_refused_without_repeating_them(url, says):
    with pytest.raises(ConfigError) as caught:
        config_from_text(f"sinks:\n  webhook: {{url: '{url}'}}\n")
    assert "sinks.webhook.url" in str(caught.value) and says in str(caught.value)
    assert "hook" not in str(caught.value).split("sinks.webhook.url")[1].replace("webhook", "")


def write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_load_config_checks_the_machine_only_when_asked(tmp_path):
    path = write(tmp_path, f"sources:\n  - name: a\n    path: {tmp_path / 'gone.mp4'}\nsinks: {{stdout: {{enabled: true}}}}\n")
    load_config(path)  # the examples in configs/ name files of another machine: loading is fine
    with pytest.raises(ConfigError, match=rf"^{path}:3: sources\[0\].path: {tmp_path}/gone.mp4: no such file$"):
        load_config(path, check=True)


def test_every_problem_is_counted_on_one_line(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    path = write(tmp_path, (
        f"sources:\n  - name: a\n    path: {tmp_path}\n"
        f"sinks:\n  files: {{dir: {plain}}}\n  mqtt: {{host: 127.0.0.1, tls: {{enabled: true, ca_file: {tmp_path / 'ca.pem'}}}}}\n"
        f"  outbox: {{path: {plain / 'o.sqlite'}}}\n"
        f"store: {{enabled: true, path: {tmp_path}}}\n"
    ))
    with pytest.raises(ConfigError) as caught:
        load_config(path, check=True)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:3: sources[0].path: {tmp_path} is a folder, not a video file (and 4 more: ")
    for piece in (":5: sinks.files.dir: ", f"{plain} is a file, not a folder", ":7: sinks.outbox.path: ",
                  ":6: sinks.mqtt.tls.ca_file: ", ":8: store.path: ", f"{tmp_path} is a folder, not a file"):
        assert piece in message, message


def test_a_disabled_source_and_unused_sinks_are_not_checked(tmp_path):
    config = config_from_text(
        f"sources:\n  - {{name: a, path: {tmp_path / 'gone.mp4'}, enabled: false}}\n"
        f"sinks: {{stdout: {{enabled: true}}, outbox: {{path: {tmp_path}}}}}\n"  # no mqtt: the outbox is unused
    )
    check_config(config)


def test_no_sink_is_refused():
    with pytest.raises(ConfigError, match="enables no sink"):
        check_config(config_from_text("sources: []\n"))


def test_folders(tmp_path):
    assert folder_problem(tmp_path) is None
    assert folder_problem(tmp_path / "new" / "deeper") is None  # made by the run, under a writable one
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert folder_problem(plain / "sub") == f"{plain} is a file, not a folder"
    assert folder_problem("/proc/streamproc-test").startswith("cannot write in /proc: ")
    assert list(tmp_path.iterdir()) == [plain]  # checking made nothing
