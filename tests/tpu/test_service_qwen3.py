"""The whole service on a Qwen3-VL bmodel: `streamproc run` with a file source, the scene-change
gate, a keyword rule and a question rule (asked as a follow-up turn in the history bmodel's KV
cache), and a real mosquitto. Nothing in the config names the family: frame size (32 px tokens),
segment length (timestamps per frame pair) and the inputs come from the bmodel and its tokenizer
folder. The video ends after two short segments, so the run exits by itself."""
from __future__ import annotations

import json

import pytest

from tests.support.cli_runs import write_yaml
from tests.support.mosquitto import Mosquitto, mosquitto_unavailable_reason
from tests.support.mqtt_subscriber import Subscriber
from tests.support.service import ServiceProcess, wait_until

from .conftest import bmodel_path, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.cpu_bound]


def test_run_on_the_qwen3_fixture_with_gate_rules_and_mqtt(tmp_path, runtime_dir, tiny_qwen3_dir, make_video):
    reason = mosquitto_unavailable_reason()
    if reason:
        unavailable(reason)
    clip = make_video(duration_s=4.0, fps=2, width=128, height=128, gop=4)
    with Mosquitto(tmp_path) as broker:
        config = {
            "sources": [{"name": "cam", "path": str(clip)}],
            "segmenting": {"max_duration_s": 2, "answer_reserve": 8},
            "gate": {"mode": "scene_change"},
            "backend": {"type": "tpu", "bmodel": str(bmodel_path("qwen3_history_bf16_s256_c64")),
                        "tokenizer": str(tiny_qwen3_dir), "runtime_dir": runtime_dir},
            "generation": {"max_new_tokens": 3},
            "rules": [{"name": "anything", "pattern": r"\S"},
                      {"name": "person", "question": "Is a person there?"}],
            "sinks": {
                "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": "sp", "reconnect_min_delay_s": 0.2,
                         "reconnect_max_delay_s": 1.0},
                "outbox": {"path": str(tmp_path / "outbox.sqlite"), "synchronous": "normal"},
            },
            # auto: the question as a follow-up turn on this history bmodel
            "service": {"rule_max_new_tokens": 8, "metrics": {"enabled": False}, "policy": {"rules_call": "auto"}},
        }
        sub = Subscriber(broker.port, ["sp/#"]).start()
        try:
            path = write_yaml(tmp_path / "qwen3.yaml", config)
            with ServiceProcess(["-m", "streamproc", "-v", "run", str(path)], tmp_path,
                                env={"STREAMPROC_BMRT_DIR": runtime_dir}) as service:
                code = service.wait(1500)
                log = service.log()
            assert code == 0, log[-4000:]
            assert "Qwen3-VL" in log  # the backend says which family the bmodel is
            assert wait_until(lambda: sub.on("sp/cam/captions"), 30), log[-3000:]
            caption = sub.on("sp/cam/captions")[0].json()
            assert caption["source"] == "cam" and caption["text"] and caption["tokens"]["visual"] > 0
            assert wait_until(lambda: any(m.text == "ON" for m in sub.on("sp/cam/rules/anything/state")), 30)
            # the final stats event (the run is shorter than stats_interval_s) carries the gate's counts
            assert wait_until(lambda: sub.on("sp/stats"), 30), log[-3000:]
            assert "gate" in json.dumps(sub.on("sp/stats")[-1].json()["stats"])
        finally:
            sub.stop()
