"""Map-reduce summaries on the tiny model (transformers, CPU): every caption in the window is in
some map step, no request exceeds the context, the answer cites its time ranges; the scheduler's
summary event is valid, stored and published through the pipeline's sinks; `streamproc summarize`."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from streamproc.cli import main  # noqa: E402
from streamproc.config.store import StoreConfig, SummaryConfig  # noqa: E402
from streamproc.events import Event, validate  # noqa: E402
from streamproc.store.sink import StoreSink  # noqa: E402
from streamproc.store.scheduler import SummaryScheduler  # noqa: E402
from streamproc.store.search import StoreReader  # noqa: E402
from streamproc.store.summarize import Summarizer  # noqa: E402
from streamproc.store.timeparse import clock, zone  # noqa: E402
from tests.support.service import write_config  # noqa: E402
from tests.unit.test_store import T0, caption  # noqa: E402

pytestmark = pytest.mark.hf

CONTEXT = 320
SCENES = ["a courier in a yellow vest rings the bell", "a grey cat walks along the fence",
          "a white van parks across the street", "two children ride bicycles past the gate"]


def entries(count: int) -> list[dict]:
    rows = []
    for i in range(count):
        start = T0 + i * 30
        rows.append({"event_id": f"porch@{i}", "kind": "caption", "source": "porch", "start": start,
                     "end": start + 20, "text": f"{SCENES[i % len(SCENES)]} (scene {i})"})
    return rows


class Recording:
    """The real backend; records every request's size."""

    def __init__(self, backend):
        self.inner, self.requests = backend, []
        self.model_id, self.name, self.seq_length = backend.model_id, backend.name, backend.seq_length

    @property
    def inputs(self):
        return self.inner.inputs

    def describe(self, inputs, params):
        self.requests.append((inputs.total_tokens, params.max_new_tokens))
        return self.inner.describe(inputs, params)


def test_map_reduce_covers_every_caption_within_the_context(tiny_hf_backend):
    backend = Recording(tiny_hf_backend)
    summarizer = Summarizer(backend, context_tokens=CONTEXT, max_new_tokens=8, tz=zone("UTC"))
    window = entries(12)
    summary = summarizer.summarize(window, start=T0, end=T0 + 900, who="porch")

    maps = [s for s in summary.steps if s.level == 0]
    reduces = [s for s in summary.steps if s.level > 0]
    assert len(maps) >= 2 and reduces, "12 captions in a 320-token context take several map steps and a reduce"
    covered = [item for step in maps for item in step.items]
    assert sorted(covered) == sorted(e["event_id"] for e in window) and len(covered) == len(set(covered))
    assert all(step.prompt_tokens + step.answer_tokens <= CONTEXT for step in summary.steps)
    assert len(backend.requests) == len(summary.steps)
    assert all(tokens + answer <= CONTEXT for tokens, answer in backend.requests)
    assert sum(r["entries"] for r in summary.ranges) == 12 and len(summary.ranges) == len(maps)
    # ranges in time order, each cited in the text
    assert [r["start"] for r in summary.ranges] == sorted(r["start"] for r in summary.ranges)
    for r in summary.ranges:
        assert f"{clock(r['start'], zone('UTC'))} - {clock(r['end'], zone('UTC'))} ({r['entries']} entries)" in summary.text
    assert summary.text.index("Based on 12 stored entries") > 0


def test_a_caption_longer_than_the_context_is_cut_not_sent_whole(tiny_hf_backend):
    backend = Recording(tiny_hf_backend)
    summarizer = Summarizer(backend, context_tokens=300, max_new_tokens=8, tz=zone("UTC"))
    long = entries(2)
    long[0]["text"] = " ".join(SCENES * 40)
    summary = summarizer.summarize(long, start=T0, end=T0 + 60, who="porch")
    assert all(tokens + answer <= 300 for tokens, answer in backend.requests)
    assert sorted(i for s in summary.steps if s.level == 0 for i in s.items) == ["porch@0", "porch@1"]


def test_the_scheduler_stores_and_publishes_summaries(tiny_hf_backend, tmp_path):
    store = StoreSink(StoreConfig(enabled=True, path=tmp_path / "s.sqlite"))
    store.start()
    for i, row in enumerate(entries(8)):
        data = caption(i, row["text"], start=row["start"])
        store.handle(Event("caption", data["id"], "porch", data))
    assert store.flush(10)
    emitted: list[Event] = []

    def emit(event: Event) -> None:  # what Pipeline.emit does: every sink gets it
        emitted.append(event)
        store.handle(event)

    now = [T0 + 300.0]
    schedule = SummaryConfig(every="5m", window="10m", sources=["porch"], max_new_tokens=8, context_tokens=1024)
    scheduler = SummaryScheduler([schedule], store.config.path, ["porch", "gate"], lambda: tiny_hf_backend, emit,
                                 before_read=lambda: store.flush(5), clock=lambda: now[0])
    try:
        assert scheduler.run_due() == []  # the first one is due one period after the start
        now[0] = T0 + 600.0
        made = scheduler.run_due()
        assert len(made) == 1 and emitted == made
        data = made[0].to_dict()
        validate(data)
        assert data["type"] == "summary" and data["source"] == "porch" and data["entries"] == 8
        assert (data["start"], data["end"]) == (T0, T0 + 600.0)
        assert store.flush(10)
        with StoreReader(store.config.path) as reader:
            assert reader.summaries(sources=["porch"])[0]["id"] == data["id"]
        assert scheduler.run_due() == []  # not due again until five minutes later
    finally:
        scheduler.backend = None  # the session's backend is not the scheduler's to close
        scheduler.stop()
        store.stop()


def test_cli_summarize(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    store = StoreSink(StoreConfig(enabled=True, path=path))
    store.start()
    for i, row in enumerate(entries(6)):
        data = caption(i, row["text"], start=row["start"])
        store.handle(Event("caption", data["id"], "porch", data))
    assert store.flush(10)
    store.stop()
    config = write_config(tmp_path, {
        "backend": {"type": "hf", "model": str(tiny_model_dir), "device": "cpu", "dtype": "float32"},
        "store": {"enabled": True, "path": str(path)},
    })
    argv = ["summarize", "--config", str(config), "--since", str(T0 - 1), "--until", str(T0 + 3600),
            "--tz", "UTC", "--max-new-tokens", "8", "--context-tokens", "1024", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["entries"] == 6 and out["ranges"] and "Based on 6 stored entries" in out["text"]
    assert all(s["prompt_tokens"] + 8 <= 1024 for s in out["steps"])
    assert main(argv[:3] + ["--since", "2020-01-01", "--until", "2020-01-02"]) == 0  # an empty window
    assert "Nothing was recorded" in capsys.readouterr().out
