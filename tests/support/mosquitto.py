"""A real mosquitto broker for tests: own config, own free port, start / stop / kill / restart.

    with Mosquitto(tmp_path) as broker:                       # plain, anonymous
        broker.port
        broker.kill()                                          # SIGKILL: an outage
        broker.start()                                         # back on the same port

    Mosquitto(tmp_path, tls=pki, users={"alice": "s3cret"})   # TLS listener + password file

Persistence is off unless asked for: the outage test turns it on only so that the *test's
subscriber* keeps its session across the kill (see tests/integration/test_mqtt_outage.py).
"""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

MOSQUITTO = os.environ.get("STREAMPROC_MOSQUITTO", shutil.which("mosquitto") or "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def mosquitto_unavailable_reason() -> Optional[str]:
    if not Path(MOSQUITTO).exists():
        return f"mosquitto not found at {MOSQUITTO} (apt-get install mosquitto; tests/support/install_system_deps.sh)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def password_line(user: str, password: str, *, iterations: int = 101) -> str:
    """A mosquitto 2 password file line: PBKDF2-SHA512 ('$7$'), as mosquitto_passwd writes it."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"{user}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def write_password_file(path: Path, users: dict[str, str]) -> None:
    path.write_text("".join(password_line(u, p) + "\n" for u, p in users.items()))
    path.chmod(0o600)


class Mosquitto:
    def __init__(
        self,
        workdir: Path,
        *,
        port: Optional[int] = None,
        tls=None,  # tests.support.certs.Pki
        require_certificate: bool = False,
        users: Optional[dict[str, str]] = None,
        persistence: bool = False,
        name: str = "broker",
    ):
        reason = mosquitto_unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self.dir = Path(workdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.tls = tls
        self.users = dict(users or {})
        self.log_path = self.dir / "mosquitto.log"
        self.conf_path = self.dir / "mosquitto.conf"
        self.process: Optional[subprocess.Popen] = None
        self._write_config(require_certificate, persistence)

    def _write_config(self, require_certificate: bool, persistence: bool) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'false' if self.users else 'true'}",
            f"persistence {'true' if persistence else 'false'}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "max_queued_messages 100000",
        ]
        if persistence:
            # Saved every second: the subscriber's session must be on disk before a SIGKILL.
            lines += [f"persistence_location {self.dir}/", "autosave_interval 1"]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise mosquitto drops to 'mosquitto', which cannot read tmp files
        if self.users:
            password_file = self.dir / "passwords"
            write_password_file(password_file, self.users)
            lines.append(f"password_file {password_file}")
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                f"require_certificate {'true' if require_certificate else 'false'}",
            ]
        self.conf_path.write_text("\n".join(lines) + "\n")

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> "Mosquitto":
        if self.running:
            return self
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited ({self.process.returncode}): {err.strip()} {self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s} s: {self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM: a clean broker shutdown."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes, connections drop, nothing is saved."""
        self._signal(signal.SIGKILL)

    def restart(self) -> "Mosquitto":
        self.kill()
        return self.start()

    def _signal(self, sig: int) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
