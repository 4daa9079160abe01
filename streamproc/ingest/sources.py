"""PyAV video sources: files and live streams (RTSP etc.), sampled and scaled inside the decoder.

A source yields `Frame`s (and `Gap`s for live streams that dropped and came back). Frames are
scaled by swscale straight from the decoder's picture to the model's size; full-size frames never
reach numpy. Packets whose frames no sampling target needs and that no other frame references are
not decoded at all (skip_frame NONREF, chosen per packet).

Thread safety: a source is used by one thread. `stop` (a threading.Event) ends it from any thread
within two read timeouts (FFmpeg's RTSP reader waits twice before it gives up).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import av

from ..config.ingest import SamplingConfig, SourceConfig
from ..errors import MediaError, SourceError, SourceNotFound, SourceUnreachable
from ..frames import Frame, Gap
from ..redact import redact, redact_url, register_url, url_scheme
from ..supervise import Backoff, GiveUp, Supervisor
from .errors import classify
from .sampling import FrameSelector, model_frame_size
from .state import SourceState

log = logging.getLogger(__name__)

_INTERPOLATION = {"bicubic": "BICUBIC", "bilinear": "BILINEAR", "area": "AREA", "fast_bilinear": "FAST_BILINEAR"}
_FALLBACK_FRAME_DURATION = 1 / 30
_UNTIMED_WARMUP_FRAMES = 30  # frames without timestamps before a stream counts as untimed
# Live streams: FFmpeg otherwise probes ~30 frames (2-3 s) before the first one comes out.
_LIVE_ANALYZE_US = "1000000"
# FFmpeg's demuxers for single still images: a PNG or JPEG is not a clip of one frame, it is
# refused (a camera snapshot URL belongs in a different tool).
_STILL_IMAGE_FORMATS = ("image2",)


@dataclass(frozen=True)
class SourceStatus:
    source: str
    state: SourceState
    detail: str = ""
    attempt: int = 0


StatusListener = Callable[[SourceStatus], None]


@dataclass
class SourceCounters:
    packets: int = 0
    decoded: int = 0
    sampled: int = 0
    corrupt: int = 0  # damaged packets the decoder refused, and damaged pictures it flagged
    corrupt_bursts: int = 0  # runs of damage, each ended by the next clean key frame (one warning each)
    reconnects: int = 0


class VideoSource:
    """One configured camera or file."""

    def __init__(
        self,
        config: SourceConfig,
        sampling: SamplingConfig,
        on_status: Optional[StatusListener] = None,
    ):
        self.config = config
        self.sampling = sampling
        self.name = config.name
        self.counters = SourceCounters()
        self._on_status = on_status
        self._interpolation = _INTERPOLATION[sampling.interpolation]
        self._index = 0
        self.frame_size: tuple[int, int] | None = None
        self._last_frame_at: float | None = None
        self.display = redact_url(config.location)  # the location as every message names it
        register_url(config.location)  # its password is masked wherever it shows up

    @property
    def live(self) -> bool:
        return bool(self.config.live)

    def _status(self, state: SourceState, detail: str = "", attempt: int = 0) -> None:
        if self._on_status is not None:
            self._on_status(SourceStatus(self.name, state, redact(detail), attempt))

    # -- opening ---------------------------------------------------------------------------

    def _check_file(self) -> None:
        if url_scheme(self.config.location) is not None:
            return  # a URL (even a mistyped one) is never a file path; FFmpeg names its scheme
        path = Path(self.config.location)
        where = f"{self.name}: {path}"
        if not path.exists():
            raise SourceNotFound(f"{where}: no such file")
        if path.is_dir():
            raise SourceError(f"{where}: is a directory, not a video file")
        if path.stat().st_size == 0:
            raise MediaError(f"{where}: the file is empty (0 bytes)")

    def open(self) -> "av.container.InputContainer":
        """Open the container; raises a SourceError naming the problem (never the password)."""
        location = self.config.location
        options: dict[str, str] = {}
        timeout = None
        if self.live:
            timeout = (self.config.open_timeout_s, self.config.read_timeout_s)
            options["analyzeduration"] = _LIVE_ANALYZE_US
            if location.lower().startswith(("rtsp://", "rtsps://")):
                options["rtsp_transport"] = self.config.rtsp_transport
        else:
            self._check_file()
        error: SourceError | None = None
        try:
            container = av.open(location, mode="r", options=options, timeout=timeout)
        except Exception as exc:  # PyAV raises many OSError subclasses; classify names them
            error = classify(exc, self.name, location, self.live)
        if error is not None:
            # Raised outside the except block: PyAV's error carries the URL, password included,
            # and must not ride along as __context__.
            raise error
        if not container.streams.video:
            container.close()
            raise MediaError(f"{self.name}: {self.display}: has no video track")
        format_name = container.format.name or ""
        if format_name.endswith("_pipe") or format_name in _STILL_IMAGE_FORMATS:
            container.close()
            kind = format_name.replace("_pipe", "").upper() or "still"
            raise MediaError(f"{self.name}: {self.display}: is a still image ({kind}), not a video")
        return container

    # -- decoding --------------------------------------------------------------------------

    def _decode(
        self, container: "av.container.InputContainer", stop: threading.Event
    ) -> Iterator[tuple[float, "av.VideoFrame"]]:
        """Yield (pts seconds, decoded frame) for the frames the sampling grid keeps."""
        stream = container.streams.video[0]
        context = stream.codec_context
        context.thread_type = "SLICE"
        context.thread_count = self.config.decoder_threads
        time_base = float(stream.time_base) if stream.time_base else 0.0
        rate = stream.average_rate or stream.guessed_rate
        nominal = float(1 / rate) if rate else _FALLBACK_FRAME_DURATION
        selector = FrameSelector(self.sampling.fps, nominal)
        if stream.start_time is not None and time_base:
            selector.start_at(stream.start_time * time_base)
        skip = context.skip_frame
        damage = _Damage(self.name, self.counters)
        decoded = 0  # frames decoded on this connection; counters.decoded spans reconnects
        timed = False  # has this connection given any frame a timestamp?
        for packet in container.demux(stream):
            if stop.is_set():
                return
            self.counters.packets += 1
            pts = packet.pts * time_base if packet.pts is not None and time_base else None
            duration = packet.duration * time_base if packet.duration and time_base else nominal
            wanted = "DEFAULT" if selector.want_packet(pts, duration) else "NONREF"
            if wanted != skip:  # the setter is not free; most packets keep the last choice
                context.skip_frame = skip = wanted
            try:
                frames = context.decode(packet)
            except av.error.InvalidDataError as exc:
                damage.seen(pts, redact(exc.strerror or exc))
                continue
            for frame in frames:
                self.counters.decoded += 1
                decoded += 1
                if frame.is_corrupt:
                    damage.seen(pts, "damaged picture")
                    continue
                if not damage.clean(frame.key_frame):
                    continue  # predicted from a damaged picture: it would show smeared garbage
                if frame.pts is not None and time_base:
                    frame_time = frame.pts * time_base
                    timed = True
                elif timed or decoded <= _UNTIMED_WARMUP_FRAMES:
                    # A frame without a timestamp in a timed stream (live streams start so)
                    # has no place on the time line; drop it rather than guess.
                    continue
                else:  # a stream with no timestamps at all: count frames at the nominal rate
                    frame_time = decoded * nominal
                yield from selector.offer(frame_time, frame)
        yield from selector.flush()

    def _to_array(self, frame: "av.VideoFrame"):
        size = model_frame_size(frame.height, frame.width, self.sampling)
        if size != self.frame_size:
            if self.frame_size is not None:
                log.info("%s: frame size changed to %dx%d", self.name, size[1], size[0])
            self.frame_size = size
        height, width = size
        return frame.to_ndarray(width=width, height=height, format="rgb24", interpolation=self._interpolation)

    def _frame(self, media_time: float, pts: float, image) -> Frame:
        item = Frame(self.name, self._index, media_time, pts, time.time(), image)
        self._index += 1
        self.counters.sampled += 1
        return item

    # -- iteration -------------------------------------------------------------------------

    def items(self, stop: Optional[threading.Event] = None) -> Iterator[Frame | Gap]:
        """Frames until the file ends or `stop` is set; live sources reconnect on their own."""
        stop = stop or threading.Event()
        if self.live:
            yield from self._read_live(stop)
        else:
            yield from self._read_file(stop)

    def frames(self, stop: Optional[threading.Event] = None) -> Iterator[Frame]:
        """Only the frames (gaps dropped): for batch use."""
        for item in self.items(stop):
            if isinstance(item, Frame):
                yield item

    def _read_file(self, stop: threading.Event) -> Iterator[Frame]:
        self._status(SourceState.CONNECTING)
        container = self.open()
        self._status(SourceState.ONLINE)
        start: float | None = None
        failure: SourceError | None = None
        try:
            stream = container.streams.video[0]
            if stream.start_time is not None and stream.time_base is not None:
                start = float(stream.start_time * stream.time_base)
            paced_from = time.monotonic()
            for pts, frame in self._decode(container, stop):
                if start is None:
                    start = pts
                media_time = max(0.0, pts - start)
                due = paced_from + media_time / self.config.speed
                if self.config.realtime and stop.wait(max(0.0, due - time.monotonic())):
                    break
                yield self._frame(media_time, pts, self._to_array(frame))
        except (av.error.FFmpegError, OSError) as exc:
            failure = classify(exc, self.name, self.config.location, live=False)
        finally:
            container.close()
        if failure is not None:
            if self.counters.sampled == 0:
                self._status(SourceState.FAILED, str(failure))
                raise failure
            log.warning("%s: the file ends early after %d frames: %s", self.name, self.counters.sampled, failure)
        if self.counters.sampled == 0 and not stop.is_set():
            error = MediaError(f"{self.name}: {self.display}: no decodable video frames")
            self._status(SourceState.FAILED, str(error))
            raise error
        self._status(SourceState.STOPPED if stop.is_set() else SourceState.FINISHED, "" if stop.is_set() else "end of file")

    def _read_live(self, stop: threading.Event) -> Iterator[Frame | Gap]:
        """Frames across reconnects. This loop alone retries a live source: `max_attempts`
        failures in a row end it with the last error; a session that delivered frames starts the
        count over. An error retrying cannot help (refused credentials, an unknown scheme) ends
        it at once."""
        policy = self.config.reconnect
        supervisor = Supervisor(
            self.name,
            backoff=Backoff(policy.initial_delay_s, policy.max_delay_s, policy.multiplier),
            max_attempts=policy.max_attempts,
        )
        source_start = time.monotonic()
        last_frame_at: float | None = None  # monotonic time of the last frame, for gaps
        ever_connected = False
        while not stop.is_set():
            failures = supervisor.failures
            self._status(SourceState.RECONNECTING if ever_connected or failures else SourceState.CONNECTING, attempt=failures)
            error: SourceError | None = None
            try:
                container = self.open()
            except SourceError as exc:
                error = exc
            else:
                error = yield from self._session(container, stop, source_start, last_frame_at, ever_connected, supervisor)
                if self._last_frame_at is not None:
                    last_frame_at = self._last_frame_at
                    ever_connected = True
                if error is None:  # stopped
                    break
                self.counters.reconnects += 1
            if not error.retryable:  # refused credentials, an unknown scheme: retrying cannot help
                self._status(SourceState.FAILED, str(error))
                raise error
            try:
                delay = supervisor.failed(str(error))
            except GiveUp as give_up:
                self._status(SourceState.FAILED, str(error), supervisor.failures)
                raise SourceUnreachable(f"{error} ({give_up})") from None
            log.warning("%s; retrying in %.1f s", error, delay)
            self._status(SourceState.RECONNECTING, str(error), supervisor.failures)
            stop.wait(delay)
        self._status(SourceState.STOPPED)

    def _session(
        self,
        container: "av.container.InputContainer",
        stop: threading.Event,
        source_start: float,
        last_frame_at: float | None,
        ever_connected: bool,
        supervisor: Supervisor,
    ) -> Iterator[Frame | Gap]:
        """One connection's frames; returns the error that ended it (None when stopped)."""
        self._last_frame_at = None
        session_first: tuple[float, float] | None = None  # (pts, media time) of first frame
        error: SourceError | None
        try:
            for pts, frame in self._decode(container, stop):
                now = time.monotonic()
                if session_first is None:
                    session_first = (pts, now - source_start)
                    if ever_connected and last_frame_at is not None:
                        gap = Gap(self.name, session_first[1], now - last_frame_at, "stream resumed")
                        log.warning("%s: stream resumed after a %.1f s gap", self.name, gap.duration_s)
                        yield gap
                    supervisor.succeeded()
                    self._status(SourceState.ONLINE)
                self._last_frame_at = now
                media_time = session_first[1] + (pts - session_first[0])
                yield self._frame(media_time, pts, self._to_array(frame))
            if stop.is_set():
                return None
            error = SourceUnreachable(f"{self.name}: {self.display}: stream ended")
        except (av.error.FFmpegError, OSError) as exc:
            error = classify(exc, self.name, self.config.location, live=True)
        finally:
            container.close()
        return error


class _Damage:
    """Damaged input of one connection: every damaged packet or picture is counted; the pictures
    after it are dropped until the next key frame (they are predicted from garbage); a run of
    damage up to that key frame is one burst, logged once."""

    def __init__(self, name: str, counters: SourceCounters):
        self.name = name
        self.counters = counters
        self.in_burst = False

    def seen(self, pts: Optional[float], what: str) -> None:
        self.counters.corrupt += 1
        if not self.in_burst:
            self.in_burst = True
            self.counters.corrupt_bursts += 1
            where = f"{pts:.2f} s" if pts is not None else "an unknown time"
            log.warning("%s: damaged data at %s (%s); skipping pictures until the next key frame", self.name, where, what)

    def clean(self, key_frame: bool) -> bool:
        """Whether a decoded, undamaged picture may be used; a key frame ends a burst."""
        if self.in_burst and key_frame:
            self.in_burst = False
        return not self.in_burst
