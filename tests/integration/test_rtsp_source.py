"""VideoSource against a real RTSP server (GStreamer, tests/support/rtsp_server.py) on 127.0.0.1.

Needs the Debian packages that tests/support/install_system_deps.sh installs (`make test` runs it).
Without them these tests skip, or fail when STREAMPROC_TEST_STRICT=1 (`make test` sets it, so a broken
install cannot pass silently). About 30 s in all.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from typing import Callable, Optional

import numpy as np
import pytest

from streamproc.config.ingest import ReconnectConfig, SamplingConfig, SourceConfig
from streamproc.errors import SourceAuthError, SourceUnreachable
from streamproc.frames import Frame, Gap
from streamproc.ingest.sources import SourceStatus, VideoSource
from tests.support.prerequisites import STRICT
from tests.support.rtsp import RtspServer, free_port, rtsp_unavailable_reason

_REASON = rtsp_unavailable_reason()
if _REASON and STRICT:
    raise RuntimeError(f"STREAMPROC_TEST_STRICT=1 but {_REASON}")
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

SOURCE = "cam"
RIGHT_PASSWORD = "Right-pa55-7f3a"
WRONG_PASSWORD = "Wrong-pa55-9c1e"


# -- helpers ---------------------------------------------------------------------------------------


def live_config(url: str, **reconnect) -> SourceConfig:
    policy = {"initial_delay_s": 0.2, "multiplier": 2.0, "max_delay_s": 1.0, **reconnect}
    return SourceConfig(
        name=SOURCE, url=url, open_timeout_s=5.0, read_timeout_s=2.0, reconnect=ReconnectConfig(**policy)
    )


class Reader:
    """Drives `VideoSource.items(stop)` in a thread, as the service does; records what comes out.

    Items and status reports are stamped with time.monotonic() when they arrive.
    """

    def __init__(self, config: SourceConfig, sampling: Optional[SamplingConfig] = None):
        self.stop = threading.Event()
        self.statuses: list[tuple[float, SourceStatus]] = []
        self.items: "queue.Queue[tuple[float, Frame | Gap | None]]" = queue.Queue()
        self.error: Optional[BaseException] = None
        self.ended_at: Optional[float] = None
        self._status_seen = threading.Condition()
        self.source = VideoSource(config, sampling or SamplingConfig(), on_status=self._on_status)
        self.thread = threading.Thread(target=self._run, name="rtsp-reader", daemon=True)
        self.thread.start()

    def _on_status(self, status: SourceStatus) -> None:
        with self._status_seen:
            self.statuses.append((time.monotonic(), status))
            self._status_seen.notify_all()

    def _run(self) -> None:
        try:
            for item in self.source.items(self.stop):
                self.items.put((time.monotonic(), item))
        except BaseException as exc:  # handed to the test
            self.error = exc
        finally:
            self.ended_at = time.monotonic()
            self.items.put((self.ended_at, None))

    def next_item(self, timeout: float = 15.0) -> tuple[float, Frame | Gap]:
        try:
            at, item = self.items.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"nothing from the source in {timeout} s; statuses: {self.states()}") from None
        if item is None:
            raise AssertionError(f"the source ended early: {self.error!r}; statuses: {self.states()}")
        return at, item

    def next_frames(self, count: int, timeout: float = 15.0) -> list[tuple[float, Frame]]:
        frames = []
        while len(frames) < count:
            at, item = self.next_item(timeout)
            assert isinstance(item, Frame), f"expected a frame, got {item}"
            frames.append((at, item))
        return frames

    def wait_status(self, predicate: Callable[[SourceStatus], bool], timeout: float = 15.0) -> SourceStatus:
        deadline = time.monotonic() + timeout
        with self._status_seen:
            while True:
                for _, status in self.statuses:
                    if predicate(status):
                        return status
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such status in {timeout} s; statuses: {self.states()}")
                self._status_seen.wait(left)

    def states(self) -> list[tuple[str, int, str]]:
        return [(s.state, s.attempt, s.detail) for _, s in self.statuses]

    def close(self, timeout: float = 10.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the source did not stop within {timeout} s"


@pytest.fixture(scope="module")
def vga_server():
    """640x480 at 15 fps: sampled frames are 336x448 with the default SamplingConfig."""
    with RtspServer(width=640, height=480, fps=15) as server:
        yield server


@pytest.fixture(scope="module")
def auth_server():
    with RtspServer(width=320, height=240, fps=15, user="viewer", password=RIGHT_PASSWORD) as server:
        yield server


@pytest.fixture
def small_server():
    """Function scope: tests kill and pause it."""
    server = RtspServer(width=320, height=240, fps=15).start()
    yield server
    server.stop()


@pytest.fixture
def reader_factory():
    readers: list[Reader] = []

    def make(config: SourceConfig, sampling: Optional[SamplingConfig] = None) -> Reader:
        readers.append(Reader(config, sampling))
        return readers[-1]

    yield make
    for reader in readers:
        reader.stop.set()
    for reader in readers:
        reader.thread.join(10)


# -- (a) sampling from a live camera ---------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_live_stream_is_sampled_at_1_fps_to_model_size(vga_server, reader_factory):
    started = time.time()
    reader = reader_factory(live_config(vga_server.url))
    frames = reader.next_frames(5)
    reader.close()
    items = [frame for _, frame in frames]
    arrivals = [at for at, _ in frames]

    for number, frame in enumerate(items):
        assert frame.source == SOURCE
        assert frame.index == number
        assert frame.image.shape == (336, 448, 3) and frame.image.dtype == np.uint8
        assert (frame.height, frame.width) == (336, 448)
        assert started <= frame.wall_time <= time.time()
    assert reader.source.frame_size == (336, 448)

    media = [frame.media_time for frame in items]
    steps = np.diff(media)
    assert np.all(steps > 0), media
    # One frame per second of stream time; 15 fps gives a frame within 1/30 s of each target.
    assert np.allclose(steps, 1.0, atol=0.1), media
    walls = [frame.wall_time for frame in items]
    assert walls == sorted(walls)
    # Opening buffers ~2 s of stream for probing, so the first frames come in a burst; after that
    # they arrive in real time.
    assert 0.5 < arrivals[-1] - arrivals[-2] < 1.5, np.diff(arrivals)
    # The test picture moves: the frames are live, not a frozen image.
    assert not np.array_equal(items[0].image, items[-1].image)

    states = [state for state, _, _ in reader.states()]
    assert states[:2] == ["connecting", "online"]
    assert states[-1] == "stopped" and "reconnecting" not in states
    assert reader.error is None
    assert reader.source.counters.sampled == 5


# -- (b) outage: the camera dies and comes back ----------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_outage_reconnects_with_backoff_and_reports_a_gap(small_server, reader_factory):
    reader = reader_factory(live_config(small_server.url, initial_delay_s=0.2, max_delay_s=1.0))
    before = reader.next_frames(2)
    # As after an hour of streaming at 15 fps: the decoded-frame counter spans connections and must
    # not leak into the timestamps of the next one (regression: media time jumped back by an hour).
    reader.source.counters.decoded += 54_000
    small_server.kill()
    killed_at = time.monotonic()

    # The dropped connection is reported, then connection attempts fail and back off.
    dropped = reader.wait_status(lambda s: s.state == "reconnecting" and s.detail != "", timeout=10)
    assert SOURCE in dropped.detail and "127.0.0.1" in dropped.detail
    reader.wait_status(lambda s: s.state == "reconnecting" and s.attempt >= 3 and s.detail != "", timeout=10)
    time.sleep(max(0.0, 2.5 - (time.monotonic() - killed_at)))
    small_server.start()  # same port
    restarted_at = time.monotonic()
    outage = restarted_at - killed_at

    # Frames already in flight may still come; then a gap, then frames again.
    while True:
        _, item = reader.next_item(timeout=20)
        if isinstance(item, Gap):
            gap = item
            break
        before.append((0.0, item))
    after = reader.next_frames(2)
    reader.close()
    last_before = before[-1][1]
    first_after = after[0][1]

    assert gap.source == SOURCE
    # The gap runs from the last frame before the outage to the first one after it: the outage plus
    # reconnecting (the backoff sleep, opening and probing the stream: a few seconds at most).
    assert outage <= gap.duration_s <= outage + 8.0, (gap, outage)
    assert gap.media_time == pytest.approx(first_after.media_time)
    # Media time goes on forward across the outage, and sampling resumes at 1 fps.
    assert first_after.media_time - last_before.media_time >= outage - 0.5
    assert first_after.media_time - last_before.media_time <= gap.duration_s + 1.0
    assert after[1][1].media_time - first_after.media_time == pytest.approx(1.0, abs=0.1)
    assert [frame.index for _, frame in before + after] == list(range(len(before) + len(after)))
    assert reader.source.counters.reconnects >= 1

    # Status sequence: online, reconnecting (with growing attempts and waits), online again.
    states = reader.states()
    online = [i for i, (state, _, _) in enumerate(states) if state == "online"]
    assert len(online) == 2, states
    failures = [
        (at, status)
        for at, status in reader.statuses[online[0] : online[1]]
        if status.state == "reconnecting" and status.detail
    ]
    assert [status.attempt for _, status in failures] == list(range(1, len(failures) + 1))
    assert len(failures) >= 3
    waits = np.diff([at for at, _ in failures])
    # 0.2, 0.4, 0.8, then capped at 1.0 (plus the time each attempt takes to be refused), each
    # shortened by up to 20 % of jitter (streamproc.supervise.Backoff) so cameras do not retry in step.
    expected = [min(0.2 * 2**k, 1.0) for k in range(len(waits))]
    assert np.all(waits >= np.array(expected) * 0.8 - 0.02), (waits, expected)
    assert np.all(waits <= np.array(expected) + 0.5), (waits, expected)
    assert states[-1][0] == "stopped"


# -- (c) nothing listening -------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_unreachable_gives_up_after_max_attempts_with_capped_backoff(caplog):
    caplog.set_level(logging.DEBUG)
    url = f"rtsp://viewer:{RIGHT_PASSWORD}@127.0.0.1:{free_port()}/cam"
    statuses: list[tuple[float, SourceStatus]] = []
    source = VideoSource(
        live_config(url, initial_delay_s=0.1, multiplier=2.0, max_delay_s=0.4, max_attempts=6),
        SamplingConfig(),
        on_status=lambda status: statuses.append((time.monotonic(), status)),
    )
    started = time.monotonic()
    with pytest.raises(SourceUnreachable) as raised:
        next(source.items())
    elapsed = time.monotonic() - started

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{SOURCE}: rtsp://viewer:***@127.0.0.1:")
    assert "gave up after 6 attempts" in message
    assert RIGHT_PASSWORD not in message
    assert raised.value.retryable

    failures = [(at, status) for at, status in statuses if status.detail]
    assert [(status.state, status.attempt) for _, status in failures] == [
        ("reconnecting", 1),
        ("reconnecting", 2),
        ("reconnecting", 3),
        ("reconnecting", 4),
        ("reconnecting", 5),
        ("failed", 6),
    ]
    assert all(RIGHT_PASSWORD not in status.detail for _, status in statuses)
    # Exponential from 0.1 s, capped at 0.4 s, each shortened by up to 20 % of jitter
    # (streamproc.supervise.Backoff); each refused attempt itself takes milliseconds.
    expected = [0.1, 0.2, 0.4, 0.4, 0.4]
    waits = np.diff([at for at, _ in failures])
    assert np.all(waits >= np.array(expected) * 0.8 - 0.02), waits
    assert np.all(waits <= np.array(expected) + 0.3), waits
    assert elapsed < sum(expected) + 2.0
    retry_logs = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    logged = [float(text.rsplit("retrying in ", 1)[1].split()[0]) for text in retry_logs]
    assert len(logged) == len(expected)
    assert all(0.8 * e - 0.05 <= d <= e + 0.05 for d, e in zip(logged, expected)), logged
    assert RIGHT_PASSWORD not in caplog.text


# -- (d) credentials -------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_wrong_credentials_fail_at_once_without_leaking_the_password(auth_server, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    statuses: list[SourceStatus] = []
    # max_attempts None: a retryable error would retry for ever; an auth error must not be retried.
    source = VideoSource(
        live_config(auth_server.url_with("viewer", WRONG_PASSWORD), max_attempts=None),
        SamplingConfig(),
        on_status=statuses.append,
    )
    started = time.monotonic()
    with pytest.raises(SourceAuthError) as raised:
        next(source.items())
    assert time.monotonic() - started < 5.0
    error = raised.value
    assert not error.retryable
    assert "\n" not in str(error)
    assert "rtsp://viewer:***@127.0.0.1" in str(error)
    assert [status.state for status in statuses] == ["connecting", "failed"]

    printed = "".join(traceback.format_exception(error))  # what an uncaught error would print
    out, err = capfd.readouterr()
    texts = {
        "message": str(error),
        "repr": repr(error),
        "traceback": printed,
        "status details": " ".join(status.detail for status in statuses),
        "logs": caplog.text,
        "stdout/stderr": out + err,
    }
    for where, text in texts.items():
        assert WRONG_PASSWORD not in text, f"the password leaks in the {where}"
        assert RIGHT_PASSWORD not in text, f"the server's password leaks in the {where}"


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_right_credentials_stream(auth_server, reader_factory, caplog):
    caplog.set_level(logging.DEBUG)
    assert RIGHT_PASSWORD in auth_server.url
    reader = reader_factory(live_config(auth_server.url))
    (_, frame), = reader.next_frames(1)
    reader.close()
    assert frame.image.shape == (252, 308, 3)  # 240x320 at the default model size
    assert [state for state, _, _ in reader.states()] == ["connecting", "online", "stopped"]
    assert RIGHT_PASSWORD not in caplog.text


# -- (e) stopping from another thread --------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_stop_from_another_thread_ends_a_live_read_promptly(vga_server, reader_factory):
    reader = reader_factory(live_config(vga_server.url))
    reader.next_frames(1)
    stopped_at = time.monotonic()
    reader.close()
    assert reader.ended_at is not None and reader.ended_at - stopped_at < 1.0
    assert reader.error is None
    assert reader.states()[-1][0] == "stopped"


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_stop_during_backoff_ends_promptly(reader_factory):
    reader = reader_factory(live_config(f"rtsp://127.0.0.1:{free_port()}/cam", initial_delay_s=30.0))
    reader.wait_status(lambda s: s.state == "reconnecting" and s.detail != "", timeout=10)
    stopped_at = time.monotonic()
    reader.close()
    assert reader.ended_at - stopped_at < 0.5
    assert reader.error is None
    assert reader.states()[-1][0] == "stopped"


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_hung_camera_times_out_and_recovers(small_server, reader_factory):
    """SIGSTOP: the TCP connection stays up but nothing comes. The read timeout must notice."""
    config = SourceConfig(
        name=SOURCE,
        url=small_server.url,
        open_timeout_s=1.0,
        read_timeout_s=1.0,
        reconnect=ReconnectConfig(initial_delay_s=0.2, max_delay_s=0.5),
    )
    reader = reader_factory(config)
    reader.next_frames(2)
    small_server.pause()
    paused_at = time.monotonic()
    hung = reader.wait_status(lambda s: s.state == "reconnecting" and s.detail != "", timeout=10)
    # FFmpeg's RTSP demuxer takes up to twice the read timeout to give up on a silent connection.
    assert time.monotonic() - paused_at < 2 * config.read_timeout_s + 1.0
    assert "timed out" in hung.detail
    small_server.resume()
    while True:  # the camera answers again: a gap, then frames
        _, item = reader.next_item(timeout=20)
        if isinstance(item, Gap):
            break
    reader.next_frames(1)
    reader.close()
    assert reader.error is None
