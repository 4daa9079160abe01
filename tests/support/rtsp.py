"""Start, stop, kill and restart a real RTSP server (tests/support/rtsp_server.py) for tests.

The server runs under the SYSTEM python, which has GStreamer's bindings (python3-gi); this module
imports no gi and works from the venv. Install the Debian packages with
tests/support/install_system_deps.sh (`make test` does).

    from tests.support.rtsp import RtspServer, rtsp_unavailable_reason

    with RtspServer(width=320, height=240) as server:
        url = server.url                        # rtsp://127.0.0.1:PORT/cam (credentials if any)
        server.kill()                           # SIGKILL: an outage
        server.start()                          # back on the same port
"""
from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Optional
from urllib.parse import quote

SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
INSTALL_SCRIPT = Path(__file__).with_name("install_system_deps.sh")
SYSTEM_PYTHON = os.environ.get("STREAMPROC_RTSP_PYTHON", "/usr/bin/python3")


@functools.lru_cache(maxsize=1)
def rtsp_unavailable_reason() -> Optional[str]:
    """None when the RTSP test server can run here, else why not (for pytest.skip)."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found (the RTSP test server needs the system python with python3-gi)"
    try:
        result = subprocess.run(
            [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--check"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run the RTSP test server: {exc}"
    if result.returncode != 0:
        detail = " ".join(result.stderr.split()) or f"exit status {result.returncode}"
        return f"RTSP test server unavailable: {detail} (install with tests/support/install_system_deps.sh)"
    return None


def rtsp_available() -> bool:
    """Whether the system packages the RTSP test server needs are installed."""
    return rtsp_unavailable_reason() is None


def free_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening (for 'unreachable' tests)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RtspServerError(RuntimeError):
    pass


class RtspServer:
    """One RTSP test server process. `start()` again after `stop()`/`kill()` reuses the port."""

    def __init__(
        self,
        *,
        port: int = 0,
        path: str = "/cam",
        user: Optional[str] = None,
        password: Optional[str] = None,
        width: int = 640,
        height: int = 480,
        fps: int = 15,
        pattern: str = "ball",
        overlay_clock: bool = False,
        extra_args: tuple[str, ...] = (),
        ready_timeout: float = 20.0,
    ):
        self.port = port  # 0 until the first start picks one
        self.path = path if path.startswith("/") else "/" + path
        self.user = user
        self.password = password
        self.width, self.height, self.fps = width, height, fps
        self.pattern = pattern
        self.overlay_clock = overlay_clock
        self.extra_args = tuple(extra_args)
        self.ready_timeout = ready_timeout
        self.process: Optional[subprocess.Popen[str]] = None
        self._stderr: list[str] = []

    # -- addresses ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The stream URL, with the server's credentials when it has any."""
        if self.user is not None:
            return self.url_with(self.user, self.password or "")
        return self.bare_url

    @property
    def bare_url(self) -> str:
        """The stream URL without credentials."""
        if not self.port:
            raise RtspServerError("the server has not been started yet, so it has no port")
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def url_with(self, user: str, password: str) -> str:
        """The stream URL with these credentials (e.g. wrong ones)."""
        return self.bare_url.replace("rtsp://", f"rtsp://{quote(user, safe='')}:{quote(password, safe='')}@", 1)

    # -- life cycle --------------------------------------------------------------------------

    def command(self) -> list[str]:
        cmd = [
            SYSTEM_PYTHON,
            str(SERVER_SCRIPT),
            "--port", str(self.port),
            "--path", self.path,
            "--width", str(self.width),
            "--height", str(self.height),
            "--fps", str(self.fps),
            "--pattern", self.pattern,
            "--watch-stdin",
        ]  # fmt: skip
        if self.user is not None:
            cmd += ["--user", self.user, "--password", self.password or ""]
        if self.overlay_clock:
            cmd.append("--overlay-clock")
        return cmd + list(self.extra_args)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process is not None else None

    def start(self) -> "RtspServer":
        """Start (or restart on the same port) and wait until it accepts clients."""
        if self.running:
            raise RtspServerError("the RTSP test server is already running")
        self._stderr = []
        process = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,  # closed when this process dies: the server exits (--watch-stdin)
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a Ctrl-C in the terminal goes to pytest, which stops us
        )
        self.process = process
        threading.Thread(target=self._drain_stderr, args=(process,), daemon=True).start()
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.ready_timeout)
        line = ready[0].strip() if ready else ""
        if not line.startswith("READY "):
            self.kill()
            why = "timed out" if not ready else f"exit status {process.poll()}"
            raise RtspServerError(f"RTSP test server did not start ({why}): {' '.join(self._stderr)[-2000:]}")
        url = line.split()[1]
        self.port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        return self

    def _drain_stderr(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for text in process.stderr:
            self._stderr.append(text.rstrip())

    @property
    def stderr(self) -> str:
        return "\n".join(self._stderr)

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM and wait: a clean shutdown. Returns the exit status."""
        return self._end(signal.SIGTERM, timeout)

    def kill(self) -> Optional[int]:
        """SIGKILL: the camera disappears at once (the outage simulation)."""
        return self._end(signal.SIGKILL, 10.0)

    def pause(self) -> None:
        """SIGSTOP: the connection stays open but no data flows (a hung camera)."""
        if self.running:
            os.kill(self.process.pid, signal.SIGSTOP)  # type: ignore[union-attr]

    def resume(self) -> None:
        if self.running:
            os.kill(self.process.pid, signal.SIGCONT)  # type: ignore[union-attr]

    def restart(self) -> "RtspServer":
        """Clean stop, then start on the same port."""
        self.stop()
        return self.start()

    def _end(self, sig: int, timeout: float) -> Optional[int]:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            try:
                process.send_signal(sig)
                if sig != signal.SIGKILL:
                    os.kill(process.pid, signal.SIGCONT)  # in case it was paused
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        return process.returncode

    def __enter__(self) -> "RtspServer":
        return self.start() if not self.running else self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RtspServer({self.bare_url if self.port else 'no port'}, {state})"


def _main(argv: list[str]) -> int:
    """`python -m tests.support.rtsp`: say whether the RTSP test server can run here."""
    reason = rtsp_unavailable_reason()
    print(reason or "RTSP test server available")
    return 1 if reason else 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
