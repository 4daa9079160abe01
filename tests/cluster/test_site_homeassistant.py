"""Home Assistant, status and stats in cluster mode, with two real `streamproc run` boxes on a
3-node JetStream cluster and mosquitto: the site publishes the entities one box would (discovery
once per site, not per box), its availability and service state, each camera's status, and
every box's stats; when the box speaking for the site is killed, the other takes over without
the site going unavailable or discovery being sent again."""
from __future__ import annotations

import json
from collections import Counter

from streamproc.config import load_config
from streamproc.sinks.homeassistant import discovery_messages
from streamproc.sinks.topics import Topics
from tests.cluster.site import PREFIX, Site


def _last(site: Site, topic: str):
    found = site.subscriber.on(topic)
    return found[-1].payload if found else None


def _service(site: Site) -> dict:
    payload = _last(site, f"{PREFIX}/service")
    return json.loads(payload) if payload else {}


def _stats_boxes(site: Site) -> set:
    payload = _last(site, f"{PREFIX}/stats")
    return set(json.loads(payload)["stats"]["boxes"]) if payload else set()


def _speakers(site: Site) -> list:
    """The boxes that say they speak for the site, in the latest site stats."""
    boxes = json.loads(_last(site, f"{PREFIX}/stats"))["stats"]["boxes"]
    return sorted(box for box, stats in boxes.items() if stats.get("sinks", {}).get("cluster-mqtt", {}).get("speaker"))


def test_site_looks_like_one_box_to_home_assistant(cluster_prerequisites, tmp_path, tiny_model_dir, camera_video):
    with Site(tmp_path, tiny_model_dir, camera_video, cameras=4, ack_wait_s=3.0, capacity=4, homeassistant=True) as site:
        config = load_config(site.config_path, env={"STREAMPROC_BOX": "any"})
        expected = {topic for topic, _ in discovery_messages(
            config.sinks.homeassistant, Topics(PREFIX), config.rules, site.cameras, service_state=True)}
        for name in ("b0", "b1"):
            site.start_box(name)
        try:
            site.wait(lambda: len(site.owners()) == 4, 90, "every camera owned")
            site.wait(lambda: _service(site).get("detail", "").startswith("2 of 2 boxes ready"), 90, "the site ready, 2 boxes")
            assert _service(site)["state"] == "ready"
            site.wait(lambda: _stats_boxes(site) == {"b0", "b1"}, 20, "stats of both boxes")
            site.wait(lambda: len(site.subscriber.on(f"{PREFIX}/stats")) >= 3, 10, "more stats")
            assert _speakers(site) == ["b0"]  # one box speaks for the site
            site.wait(lambda: all(_last(site, f"{PREFIX}/{c}/captions/last") for c in site.cameras), 20, "a last caption each")
            for camera in site.cameras:
                status = site.wait(lambda: _last(site, f"{PREFIX}/{camera}/status"), 10, f"{camera}'s status")
                assert json.loads(status)["state"] == "online"
            assert _last(site, f"{PREFIX}/available") == b"online"
            configs = Counter(m.topic for m in site.subscriber.on("homeassistant/+/+/+/config"))
            assert set(configs) == expected  # the entities of one box with these cameras and rules
            assert set(configs.values()) == {1}, configs.most_common(3)  # once per site, not per box

            # the speaker (the smallest name) dies: the site stays available, b1 speaks now
            site.kill_box("b0")
            site.wait(lambda: _service(site).get("detail", "").startswith("1 of 1 boxes ready"), 20, "b1 speaks for the site")
            site.wait(lambda: _stats_boxes(site) == {"b1"}, 20, "stats of b1 alone")
            assert _speakers(site) == ["b1"]
            site.wait(lambda: any(m.payload == b"offline" for m in site.subscriber.on(f"{PREFIX}/available")), 20, "b0's will")
            site.wait(lambda: _last(site, f"{PREFIX}/available") == b"online", 10, "the site online again")
            assert set(Counter(m.topic for m in site.subscriber.on("homeassistant/+/+/+/config")).values()) == {1}
        except AssertionError:
            print(site.logs())
            raise


def test_the_site_is_ready_while_any_box_is():
    from streamproc.cluster.sitemqtt import site_service

    both = site_service({"b1": {"state": "loading", "model": {"loaded": 0, "of": 1}},
                         "b0": {"state": "ready", "model": {"loaded": 1, "of": 1}}}).data
    assert (both["state"], both["model"], both["detail"]) == ("ready", {"loaded": 1, "of": 2},
                                                             "1 of 2 boxes ready (b0); b1 loading")
    assert site_service({"b0": {"state": "stopping", "model": {"loaded": 1, "of": 1}}}).data["state"] == "stopping"
    assert site_service({"b0": {"state": "loading"}, "b1": {"state": "stopping"}}).data["state"] == "loading"
