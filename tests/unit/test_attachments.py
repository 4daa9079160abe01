"""Alert attachments on a generated video: the raised alert's snapshot and clip exist, open with
PyAV, their sha256 matches, the clip covers the segment's time range (remuxed original packets for
a file, encoded sampled frames for a live source), they are served over HTTP, and retention
removes old ones by age and by size."""
from __future__ import annotations

import dataclasses

import hashlib
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import av
import pytest

from streamproc.attachments import AttachmentStore
from streamproc.media.clips import probe_duration
from streamproc.config.ingest import SamplingConfig, SourceConfig
from streamproc.config.rules import RuleConfig
from streamproc.config.sinks import AttachmentsConfig
from streamproc.events import validate
from streamproc.frames import Segment
from streamproc.ingest.sources import VideoSource
from streamproc.rules.alerts import RuleEngine
from streamproc.samples import read_counter
from streamproc.attachments.plugin import AttachmentsPlugin
from streamproc.config.http import HttpConfig
from streamproc.http import HttpServer, build_app

FPS = 15  # of the generated video; sampled at 1 fps


@pytest.fixture(scope="module")
def video(make_video) -> Path:
    return make_video(duration_s=30, fps=FPS, width=320, height=240, gop=FPS)


@pytest.fixture(scope="module")
def frames(video):
    source = VideoSource(SourceConfig(name="cam1", path=video), SamplingConfig(fps=1.0, max_pixels=112 * 168, video_area_factor=1.0))
    return list(source.frames())


def segment_of(frames, source: str, first: int, count: int = 10) -> Segment:
    chosen = tuple(frames[first : first + count])
    return Segment(source, 0, chosen, chosen[0].media_time, chosen[-1].media_time + 1.0, 1.0)


def raise_alert(store: AttachmentStore, segment: Segment):
    """An alert through the attachments plug-in, as the bus hands it over (with its segment)."""
    engine = RuleEngine([RuleConfig(name="intruder", keywords=["person"])], live_sources=["door"])
    (alert,) = engine.evaluate(segment.source, segment, "A person climbs the gate & runs <away>.", {})
    return AttachmentsPlugin(store).enrich(dataclasses.replace(alert, segment=segment))


def store_in(tmp_path, **overrides) -> AttachmentStore:
    sources = [
        SourceConfig(name="cam1", path=tmp_path / "unused.mp4"),  # replaced per test
        SourceConfig(name="door", url="rtsp://127.0.0.1:1/door"),
    ]
    config = AttachmentsConfig(dir=tmp_path / "attachments", **overrides)
    return AttachmentStore(config, sources)


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def decoded_counters(path: str) -> list[int]:
    with av.open(path) as container:
        return [read_counter(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


def test_a_file_alert_carries_a_snapshot_and_the_remuxed_segment(tmp_path, video, frames):
    store = store_in(tmp_path)
    store.sources["cam1"] = SourceConfig(name="cam1", path=video)
    store.start()
    segment = segment_of(frames, "cam1", 10)  # 10-20 s
    alert = raise_alert(store, segment)
    validate(alert.data)
    assert alert.data["title"] == "Intruder on cam1"
    assert alert.data["summary"].startswith("Intruder raised on camera cam1")
    snapshot, clip = alert.data["attachments"]["snapshot"], alert.data["attachments"]["clip"]
    for item in (snapshot, clip):
        assert Path(item["path"]).is_file() and Path(item["path"]).stat().st_size == item["size"] > 0
        assert sha256(item["path"]) == item["sha256"]
        assert item["url"] == "/attachments/cam1/" + Path(item["path"]).name
    # the snapshot is the segment's middle frame
    with av.open(snapshot["path"]) as container:
        (image,) = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    middle = segment.frames[len(segment.frames) // 2]
    assert image.shape == middle.image.shape and read_counter(image) == read_counter(middle.image)
    assert alert.snapshot is not None
    # the clip: original 320x240 packets from the keyframe at or before 10 s to 20 s
    assert clip["method"] == "remux"
    with av.open(clip["path"]) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 320, 240)
    counters = decoded_counters(clip["path"])
    assert counters[0] <= 10 * FPS and counters[-1] >= 20 * FPS - 1  # covers the whole segment
    assert clip["start"] <= segment.start and clip["end"] >= segment.end
    assert clip["duration"] == pytest.approx(probe_duration(Path(clip["path"])), abs=0.01)
    assert clip["duration"] < segment.duration + 2.0  # the segment, not the file


def test_a_live_alert_carries_the_sampled_frames_encoded_for_browsers(tmp_path, frames):
    store = store_in(tmp_path)
    store.start()
    segment = segment_of(frames, "door", 4, count=6)
    clip = raise_alert(store, segment).data["attachments"]["clip"]
    assert clip["method"] == "encode" and sha256(clip["path"]) == clip["sha256"]
    with av.open(clip["path"]) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
    data = Path(clip["path"]).read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: plays before it has downloaded
    assert decoded_counters(clip["path"]) == [read_counter(f.image) for f in segment.frames]
    assert clip["duration"] == pytest.approx(segment.duration, abs=0.01)
    assert (clip["start"], clip["end"]) == (pytest.approx(segment.start), pytest.approx(segment.end))


def test_a_relative_folder_gives_events_absolute_paths(tmp_path, frames, monkeypatch):
    """The default folder is relative to the working directory; an event's reader may not share
    it (another process, a later cd), so the event names each file by its absolute path."""
    monkeypatch.chdir(tmp_path)
    store = AttachmentStore(AttachmentsConfig(dir="relative/attachments"), [SourceConfig(name="door", url="rtsp://127.0.0.1:1/door")])
    store.start()
    monkeypatch.chdir("/")
    snapshot = raise_alert(store, segment_of(frames, "door", 4, count=6)).data["attachments"]["snapshot"]
    assert Path(snapshot["path"]).is_absolute() and Path(snapshot["path"]).is_file()
    assert Path(snapshot["path"]).is_relative_to(tmp_path / "relative" / "attachments")
    assert snapshot["url"] == "/attachments/door/" + Path(snapshot["path"]).name


def test_attachments_are_served_on_the_http_port(tmp_path, frames):
    store = store_in(tmp_path)
    store.start()
    alert = raise_alert(store, segment_of(frames, "door", 0, count=4))
    server = HttpServer(build_app(AttachmentsPlugin(store).routes(), HttpConfig(port=0)))
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        for item in alert.data["attachments"].values():
            with urllib.request.urlopen(base + item["url"], timeout=5) as response:
                body = response.read()
                assert response.headers["Content-Type"] == item["content_type"]
            assert hashlib.sha256(body).hexdigest() == item["sha256"]
        for bad in ("/attachments/../attachments/door/x.jpg", "/attachments/%2e%2e/etc/passwd", "/attachments/door/none.jpg"):
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(base + bad, timeout=5)
            assert error.value.code == 404
    finally:
        server.stop()


def test_retention_removes_old_files_then_the_oldest_beyond_the_size_limit(tmp_path, frames):
    store = store_in(tmp_path, max_age_h=1.0)
    store.start()
    old = raise_alert(store, segment_of(frames, "door", 0, count=4)).data["attachments"]
    hours_ago = time.time() - 2 * 3600
    for item in old.values():
        os.utime(item["path"], (hours_ago, hours_ago))
    new = raise_alert(store, segment_of(frames, "door", 10, count=4)).data["attachments"]  # writing prunes
    assert not any(Path(i["path"]).exists() for i in old.values())
    assert all(Path(i["path"]).exists() for i in new.values())

    # by size: a limit below two alerts' files keeps the newest only
    size = sum(i["size"] for i in new.values())
    sized = store_in(tmp_path, max_mb=1.5 * size / (1024 * 1024))
    sized.start()
    for i, item in enumerate(new.values()):
        os.utime(item["path"], (time.time() - 100 + i, time.time() - 100 + i))
    newest = raise_alert(sized, segment_of(frames, "door", 20, count=4)).data["attachments"]
    assert not any(Path(i["path"]).exists() for i in new.values())
    assert all(Path(i["path"]).exists() for i in newest.values())
    assert sized.total_bytes == sum(i["size"] for i in newest.values())
