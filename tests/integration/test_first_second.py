"""Connect first, load second (issue 26): a box whose model takes long to load is on MQTT, in Home
Assistant and on its health port from its first second, its camera entities read unavailable and
its State sensor "loading" until the model is ready, and a stop during the load is honoured at once.

The backend is the test plug-in with a load time (tests/support/fast_backend.py,
STREAMPROC_TEST_LOAD_S): a sleep nothing interrupts, as a native bmodel load."""
from __future__ import annotations

import json
import signal
import time

import pytest

from tests.support.service import ServiceProcess, service_config, write_config
from tests.integration.conftest import mqtt_section

pytestmark = pytest.mark.integration

HA = {"homeassistant": {"enabled": True, "node_id": "sp1"}}
RULES = [{"name": "person", "keywords": ["person"]}]


def start(tmp_path, broker, tiny_model_dir, make_video, load_s: float) -> ServiceProcess:
    clip = make_video(duration_s=4.0, fps=5, width=64, height=48, gop=5)
    config = service_config(tiny_model_dir, [{"name": "porch", "path": str(clip), "live": True}],
                            sinks=mqtt_section(broker, tmp_path, **HA))
    config["rules"] = RULES
    path = write_config(tmp_path, config)
    return ServiceProcess(["-m", "tests.support.fast_backend", "--log-format", "json", "run", str(path)], tmp_path,
                          env={"STREAMPROC_TEST_LOAD_S": str(load_s)})


def started_at(service: ServiceProcess) -> float:
    """Wall time of the service's "starting" line (after its imports and the config check)."""
    service.wait_log(r'"msg": "starting 1 source', 60)
    line = next(line for line in service.log().splitlines() if '"msg": "starting 1 source' in line)
    return json.loads(line)["ts"]


def ready_template(config: dict, service_payload: dict) -> bool:
    """What Home Assistant's availability conditions say for an entity, given the service's
    state: every condition on `sp/service` must say online (the others are not in question here)."""
    conditions = [c for c in config.get("availability", []) if c["topic"] == "sp/service"]
    return all(service_payload["state"] == "ready" for _ in conditions) if conditions else True


def test_a_loading_box_is_announced_at_once_and_its_entities_wait_for_the_model(
    broker, subscribe, tmp_path, tiny_model_dir, make_video
):
    sub = subscribe(broker.port, ["homeassistant/#", "sp/#"])
    with start(tmp_path, broker, tiny_model_dir, make_video, load_s=8.0) as service:
        t0 = started_at(service)
        assert sub.wait_for(lambda: [m.text for m in sub.on("sp/available")][-1:] == ["online"], 10)
        assert sub.wait_for(lambda: len(sub.on("homeassistant/+/+/+/config")) >= 5, 10)
        announced = max(sub.on("sp/available")[-1].at, max(m.at for m in sub.on("homeassistant/+/+/+/config")))
        loading = sub.on("sp/service")[-1].json()
        assert loading["state"] == "loading" and loading["model"] == {"loaded": 0, "of": 1}, loading
        assert "model backend 1 of 1 loaded" not in service.log()  # all of this came before the model
        print(f"availability and discovery {announced - t0:.2f} s after the service started")
        assert announced - t0 < 2.0

        configs = {m.topic: m.json() for m in sub.on("homeassistant/+/+/+/config")}
        state = configs["homeassistant/sensor/sp1/service_state/config"]
        assert state["state_topic"] == "sp/service" and "value_json.state" in state["value_template"]
        caption = configs["homeassistant/sensor/sp1/porch_caption/config"]
        assert not ready_template(caption, loading)  # unavailable while the model loads

        assert sub.wait_for(lambda: sub.on("sp/service")[-1].json()["state"] == "ready", 60), service.log()[-2000:]
        ready = sub.on("sp/service")[-1].json()
        assert ready["model"] == {"loaded": 1, "of": 1} and ready_template(caption, ready)
        assert sub.wait_for(lambda: sub.on("sp/porch/captions"), 30)  # and it describes
        service.send(signal.SIGTERM)
        assert service.wait(30) == 0
    assert [m.json()["state"] for m in sub.on("sp/service")][-1] == "stopping"
    assert [m.text for m in sub.on("sp/available")][-1] == "offline"


def test_sigterm_during_the_model_load_exits_0_within_the_grace_period(
    broker, subscribe, tmp_path, tiny_model_dir, make_video
):
    sub = subscribe(broker.port, ["sp/#"])
    with start(tmp_path, broker, tiny_model_dir, make_video, load_s=120.0) as service:
        started_at(service)
        assert sub.wait_for(lambda: sub.on("sp/service") and sub.on("sp/service")[-1].json()["state"] == "loading", 10)
        sent = time.monotonic()
        service.send(signal.SIGTERM)
        assert service.wait(10) == 0, service.log()[-2000:]
        took = time.monotonic() - sent
        print(f"stopped {took:.2f} s after SIGTERM, the model still loading")
        assert took < 5.0  # the grace period a process manager gives before SIGKILL
        assert "stopped while the model was loading" in service.log()
    assert sub.wait_for(lambda: [m.text for m in sub.on("sp/available")][-1:] == ["offline"], 5)
    assert sub.on("sp/service")[-1].json()["state"] == "stopping"
