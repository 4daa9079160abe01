"""Generated camera scenes with known truth, for the gate's accuracy test and `bench gate|capacity`.

A `Scene` renders frames at model size (numpy only) from a fixed background, nuisances that a
camera produces on its own, and events a person would want described:

  nuisances  sensor noise, an exposure ramp (gain and offset, clipped like a sensor), a ticking
             HH:MM:SS timestamp overlay, swaying foliage (give the gate its region to ignore),
             compression (the whole clip through H.264 at a low bitrate with PyAV: `compress()`)
  events     a person-sized figure walking in and standing (or crossing), a door opening, a small
             object left behind

Every event knows when it changes pixels (`changes`), so the truth of a segment is exact: a
segment shows a change if some event changes pixels between the previous segment's last frame
and its own last frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import numpy as np

Region = tuple[float, float, float, float]  # x0, y0, x1, y1 as shares of the frame

# a 3x5 bitmap font for the timestamp overlay (bit rows, top to bottom)
_GLYPHS = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), ":": (0, 2, 0, 2, 0),
}
_OBJECTS = ((35, 35, 42), (205, 175, 125), (150, 30, 30), (30, 50, 140))
FOLIAGE: Region = (0.72, 0.0, 1.0, 0.45)  # where `Scene(foliage=True)` puts its tree


@dataclass(frozen=True)
class Event:
    """Something worth a caption. `kind`: person | door | object; times in seconds."""

    kind: str
    start: float
    duration: float = 0.0  # how long it moves (person: walking in; door: opening)
    stay: float = 30.0  # person: standing before walking out (same duration)
    x: float = 0.5  # where (share of the width): the person stops, the door stands, the object lies
    seed: int = 0
    until: Optional[float] = None  # door: closes (over `duration`) at this time; object: taken away

    @property
    def changes(self) -> list[tuple[float, float]]:
        """Intervals in which this event changes pixels."""
        if self.kind == "person":
            leave = self.start + self.duration + self.stay
            return [(self.start, self.start + self.duration), (leave, leave + self.duration)]
        span = max(self.duration, 1e-3) if self.kind == "door" else 1e-3  # an object appears at once
        changes = [(self.start, self.start + span)]
        if self.until is not None:
            changes.append((self.until, self.until + span))
        return changes

    def visible_changes(self, width: int, height: int) -> list[tuple[float, float]]:
        """`changes`, trimmed to when the change shows: a person entering is seen once 16 px of
        it are in the frame, and gone once less than 16 px are left; a door's panel must have
        narrowed by 2 px (its first moments are lost to rounding; `changed_between` judges a door
        by its drawn panel)."""
        changes = self.changes
        if self.kind == "door" and self.duration > 0:
            dw = int(height * 0.13)
            lag = math.acos(max(-1.0, 1.0 - 2.0 / dw)) / (math.pi / 2 * 0.9) * self.duration
            return [(changes[0][0] + min(lag, self.duration), changes[0][1])] + changes[1:]
        if self.kind != "person":
            return changes
        pw = _person_size(height)[1]
        stop = self.x * width
        # walking in, the centre goes from -pw to `stop`: seen once x0 + pw >= 16
        enter = (16 + pw / 2) / (stop + pw)
        # walking out, from `stop` to width + pw: gone once x0 > width - 16
        leave = (width - 16 + pw / 2 - stop) / (width + pw - stop)
        (a, b), (c, d) = changes
        return [(a + (b - a) * min(1.0, max(0.0, enter)), b), (c, c + (d - c) * min(1.0, max(0.0, leave)))]


@dataclass
class Scene:
    height: int = 280
    width: int = 504
    seed: int = 0
    noise: float = 4.0  # sensor noise, luma levels (standard deviation)
    clock: bool = False
    foliage: bool = False
    exposure: Optional[tuple[float, float, float]] = None  # (start s, ramp s, final gain)
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self._background = _background(self.height, self.width, rng)
        # a bank of noise fields, picked and offset per frame (fresh noise per frame costs ms)
        pad = 16
        self._noise = np.round(rng.standard_normal((6, self.height + pad, self.width + pad, 1)) * self.noise).astype(np.int16)
        self._rng = rng
        self._leaves = _leaves(self.height, self.width, rng) if self.foliage else None

    @property
    def ignore(self) -> list[Region]:
        return [FOLIAGE] if self.foliage else []

    def frame(self, t: float, index: int = 0) -> np.ndarray:
        """The RGB frame (uint8) at time `t` seconds; `index` picks the noise. (int16 arithmetic:
        the capacity bench renders camera-hours of these.)"""
        image = self._background.copy()
        # a door is there, closed, before it opens: drawn first, so that a door that has opened
        # at the same place is drawn over it, never under it
        for event in self.events:
            if event.kind == "door" and event.start > t:
                _draw_event(image, event, t)
        for event in self.events:
            if event.start <= t:
                _draw_event(image, event, t)
        if self._leaves is not None:
            _draw_foliage(image, self._leaves, t)
        if self.exposure is not None:
            start, ramp, final = self.exposure
            progress = min(1.0, max(0.0, (t - start) / ramp)) if ramp > 0 else float(t >= start)
            gain = 1.0 + (final - 1.0) * progress
            if gain != 1.0:
                image = (image * gain + 8.0 * (gain - 1.0)).clip(-32000, 32000).astype(np.int16)
        if self.noise > 0:
            bank = self._noise[index % len(self._noise)]
            dy, dx = (index * 7) % 16, (index * 11) % 16
            image += bank[dy:dy + self.height, dx:dx + self.width]
        if self.clock:
            draw_clock(image, t)
        return np.clip(image, 0, 255).astype(np.uint8)

    def changed_between(self, t0: float, t1: float, step: float = 1.0) -> bool:
        """True if an event changes pixels in (t0, t1]. A person walking out counts as gone once
        less than 16 px of it are left at the frame's right edge (the gate's thumbnail leaves out
        a margin of up to half a cell, and a sliver at the edge is not a person any more)."""
        return changed_between(self.events, t0, t1, self.width, self.height, step)

    def frames(self, start: float, count: int, fps: float = 1.0) -> Iterator[tuple[float, np.ndarray]]:
        for i in range(count):
            t = start + i / fps
            yield t, self.frame(t, int(round(t * fps)))


def changed_between(events: Sequence[Event], t0: float, t1: float, width: int = 504, height: int = 280,
                    step: float = 1.0) -> bool:
    """True if an event changes pixels in (t0, t1]: between the frame at t0 and the one at t1
    (frames `step` seconds apart). A door counts only if its drawn panel's width differs by 2 px
    or more between two of those frames (the bar `Event.visible_changes` sets for a door that
    starts to open): the first and last moments of a swing round to the same width or move one
    pixel column."""
    for event in events:
        if not any(a < t1 and b > t0 for a, b in event.visible_changes(width, height)):
            continue
        if event.kind != "door":
            return True
        frames = max(1, int(round((t1 - t0) / step)))
        panels = [door_panel(event, t0 + k * step, height) for k in range(frames + 1)]
        if max(panels) - min(panels) >= 2:
            return True
    return False


def door_panel(event: Event, t: float, height: int) -> int:
    """The width in pixels of a door's panel at time t (full when closed, narrow when open)."""
    opened = min(1.0, max(0.0, (t - event.start) / max(event.duration, 1e-3)))
    if event.until is not None and t >= event.until:
        opened = max(0.0, 1.0 - (t - event.until) / max(event.duration, 1e-3))
    return int(round(int(height * 0.13) * math.cos(opened * math.pi / 2 * 0.9)))


def compress(frames: Sequence[np.ndarray], fps: float = 1.0, bitrate: int = 150_000, gop: int = 10) -> list[np.ndarray]:
    """The frames through H.264 at `bitrate` and back (compression artefacts and I-frame pops)."""
    import io

    import av

    height, width = frames[0].shape[:2]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=max(1, int(round(fps))))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bitrate
        stream.options = {"g": str(gop), "preset": "veryfast", "bf": "0"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer, mode="r") as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


# -- drawing -------------------------------------------------------------------------------------


def _background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A street-like still: sky and ground gradients, buildings with windows, a road."""
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    sky = np.array([150, 175, 205], np.float32) * (1.0 - 0.3 * y)
    image = np.broadcast_to(sky, (height, width, 3)).copy()
    horizon = int(height * 0.55)
    ground = np.array([95, 92, 85], np.float32) + 20 * x + 10 * np.sin(x * 37)
    image[horizon:] = np.broadcast_to(ground, (height, width, 3))[horizon:]
    for _ in range(7):  # buildings
        w = int(rng.uniform(0.08, 0.2) * width)
        h = int(rng.uniform(0.2, 0.45) * height)
        x0 = int(rng.uniform(0, 0.75) * width)
        colour = rng.uniform(60, 190, 3).astype(np.float32)
        image[horizon - h:horizon, x0:x0 + w] = colour
        for wy in range(horizon - h + 6, horizon - 8, 12):  # windows
            for wx in range(x0 + 4, x0 + w - 6, 10):
                image[wy:wy + 5, wx:wx + 4] = colour * 0.45
    road = slice(int(height * 0.8), int(height * 0.86))
    image[road] = 70
    image[int(height * 0.83), ::12] = 200  # lane marks
    grain = rng.normal(0, 6, (height, width, 1)).astype(np.float32)  # texture, fixed per scene
    return np.clip(image + grain, 0, 255).astype(np.int16)


def _leaves(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    x0, y0, x1, y1 = FOLIAGE
    h, w = int((y1 - y0) * height), int((x1 - x0) * width)
    blobs = np.zeros((h, w + 16), np.float32)
    for _ in range(120):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w + 16), rng.uniform(3, 9)
        yy, xx = np.ogrid[:h, :w + 16]
        blobs = np.maximum(blobs, ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) * rng.uniform(0.5, 1.0))
    return blobs


def _draw_foliage(image: np.ndarray, leaves: np.ndarray, t: float) -> None:
    x0, y0, x1, y1 = FOLIAGE
    height, width = image.shape[:2]
    top, left = int(y0 * height), int(x0 * width)
    h, w = leaves.shape[0], leaves.shape[1] - 16
    shift = min(16, max(0, int(round(8 + 6 * math.sin(t * 1.7) + 2 * math.sin(t * 5.3)))))  # wind
    cover = leaves[:, shift:shift + w, None]
    green = np.array([40, 95, 35], np.float32) * (0.8 + 0.4 * cover)
    region = image[top:top + h, left:left + w]
    region[...] = region * (1 - cover) + green * cover  # (cast back to int16)


def draw_clock(image: np.ndarray, t: float) -> None:
    """Burn an HH:MM:SS overlay into `image` (in place) in the top left, as cameras do."""
    seconds = int(t) + 13 * 3600 + 59 * 60 + 20  # starts at 13:59:20: minutes and hours roll too
    text = f"{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    scale = 2
    image[4:4 + 5 * scale + 4, 4:4 + len(text) * 4 * scale + 4] = 20  # the overlay's dark box
    for i, char in enumerate(text):
        for row, bits in enumerate(_GLYPHS[char]):
            for col in range(3):
                if bits >> (2 - col) & 1:
                    y, x = 6 + row * scale, 6 + (i * 4 + col) * scale
                    image[y:y + scale, x:x + scale] = 235


def _draw_event(image: np.ndarray, event: Event, t: float) -> None:
    height, width = image.shape[:2]
    rng = np.random.default_rng(event.seed)
    if event.kind == "person":
        ph, pw = _person_size(height)
        stop = event.x * width
        walk_in = min(1.0, (t - event.start) / max(event.duration, 1e-3))
        leave_at = event.start + event.duration + event.stay
        walk_out = min(1.0, max(0.0, (t - leave_at) / max(event.duration, 1e-3)))
        if walk_out >= 1.0:
            return
        cx = -pw + (stop + pw) * walk_in + (width + pw - stop) * walk_out
        feet = int(height * 0.82)
        x0 = int(cx - pw / 2)
        shirt = rng.uniform(30, 220, 3)
        _paint(image, feet - ph, feet - int(ph * 0.45), x0, x0 + pw, shirt)
        _paint(image, feet - int(ph * 0.45), feet, x0 + 1, x0 + pw - 1, shirt * 0.4 + 20)
        head = max(4, pw * 2 // 3)
        _paint(image, feet - ph - head, feet - ph, x0 + (pw - head) // 2, x0 + (pw + head) // 2, (200, 160, 130))
    elif event.kind == "door":
        dh, dw = int(height * 0.3), int(height * 0.13)
        bottom = int(height * 0.55)
        x0 = int(event.x * width)
        image[bottom - dh - 3:bottom, x0 - 3:x0 + dw + 3] = 45  # frame
        image[bottom - dh:bottom, x0:x0 + dw] = 18  # the dark room behind
        panel = door_panel(event, t, height)
        if panel > 0:
            image[bottom - dh:bottom, x0:x0 + panel] = (150, 110, 70)
            image[bottom - dh + 6:bottom - 6:14, x0 + 2:x0 + panel - 2] = (120, 85, 55)  # panels
    elif event.kind == "object":
        if event.until is not None and t >= event.until:
            return
        size = max(6, int(height * 0.07))  # ~20 px at 280: a bag or a box
        x0, y0 = int(event.x * width), int(height * 0.74)
        # a dark bag or a light parcel: the gate sees luma, and an object as bright as the ground
        # under it (isoluminant) is invisible to it (docs/gate.md)
        colour = _OBJECTS[event.seed % len(_OBJECTS)]
        _paint(image, y0, y0 + size, x0, x0 + int(size * 1.2), colour)


def _person_size(height: int) -> tuple[int, int]:
    return int(height * 0.25), max(8, int(height * 0.08))  # ~ a person at 10-15 m


def _paint(image: np.ndarray, y0: int, y1: int, x0: int, x1: int, colour) -> None:
    height, width = image.shape[:2]
    y0, y1, x0, x1 = max(0, y0), min(height, y1), max(0, x0), min(width, x1)
    if y0 < y1 and x0 < x1:
        image[y0:y1, x0:x1] = colour


# -- scenes with a given activity (bench capacity) -------------------------------------------------

DOOR_SLOTS = (0.12, 0.3, 0.48, 0.66)  # where doors stand (share of the width): apart, never overlapping
OBJECT_SLOTS = (0.15, 0.3, 0.45, 0.6, 0.75)  # where objects are left


def candidate_events(rng: np.random.Generator, seconds: int, segment_s: float) -> list[tuple[float, Event]]:
    """One candidate event per segment slot, each with a uniform draw that decides if it happens.

    Doors and objects take a free place: a door stands at one of DOOR_SLOTS and no other door
    uses that place until it has closed again (an earlier bench drew a later, still closed door
    over an earlier open one: the earlier door's changes were invisible but counted as truth);
    objects likewise. A door or object with no free place becomes a person crossing."""
    out: list[tuple[float, Event]] = []
    busy = {("door", x): -1.0 for x in DOOR_SLOTS} | {("object", x): -1.0 for x in OBJECT_SLOTS}
    for k in range(int(seconds // segment_s)):
        u = float(rng.uniform())
        start = k * segment_s + float(rng.uniform(0, segment_s))
        kind = str(rng.choice(["person", "person", "door", "object"]))
        duration, until = float(rng.uniform(2, 4)), start + float(rng.uniform(15, 90))
        if kind == "object":
            duration, until = 0.0, start + float(rng.uniform(30, 240))
        free = [x for (what, x), end in busy.items() if what == kind and end < start - 1.0]
        if kind != "person" and free:
            x = free[int(rng.integers(len(free)))]
            busy[(kind, x)] = until + duration + 1.0
            out.append((u, Event(kind, start, duration, x=x, seed=k, until=until)))
            continue
        x = float(rng.uniform(0.15, 0.75))
        out.append((u, Event("person", start, float(rng.uniform(5, 8)), float(rng.uniform(0, 40)), x, seed=k)))
    return out


def activity_scene(seed: int, seconds: int, activity: float, segment_s: float, frame: tuple[int, int],
                   foliage: bool) -> Scene:
    """A scene whose share of `segment_s` windows with change is as close to `activity` as its
    draws allow (bisection on the chance that a candidate event happens)."""
    slots = candidate_events(np.random.default_rng(seed), seconds, segment_s)
    scene = Scene(height=frame[0], width=frame[1], seed=seed, noise=4.0, clock=True, foliage=foliage)
    windows = [(k * segment_s - 1, (k + 1) * segment_s - 1) for k in range(1, int(seconds // segment_s))]

    def share(p: float) -> float:
        scene.events = [event for u, event in slots if u < p]
        return sum(scene.changed_between(a, b) for a, b in windows) / max(1, len(windows))

    if activity >= 1.0:
        share(1.0)
        return scene
    low, high = 0.0, 1.0
    for _ in range(14):
        middle = (low + high) / 2
        if share(middle) < activity:
            low = middle
        else:
            high = middle
    share(low if activity - share(low) < share(high) - activity else high)  # the nearer of the two
    return scene
