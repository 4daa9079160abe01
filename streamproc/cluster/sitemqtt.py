"""A box's MQTT side in cluster mode: the site looks to MQTT and Home Assistant as one box does.

A plug-in on the box's bus (built by cluster/box.py when `sinks.mqtt` is on), with one MQTT
connection (`MqttLink`) shared by:

- the bridge (cluster/bridge.py), unless `cluster.bridge: false`: captions, alerts, rule states
  and each camera's last caption, from the events stream;
- each camera's retained status and pictures (alert snapshot, segment snapshot), sent by the box
  that holds the camera, and only while it holds it (a box that lost a camera says nothing
  more about it);
- the site's own topics, said by one box, the *speaker*: the live box with the smallest name,
  once it has listened to the others for a few seconds (cluster/presence.py: every box reports its
  state, model progress and stats on core NATS every second). The speaker publishes the Home
  Assistant discovery (the single-box entities of sinks/homeassistant.py for every camera of
  the site, so one box or five look the same), once per site: only configs the broker does not
  already hold retained as they are (a new speaker sends none), all of them when Home Assistant
  comes online, and an empty one for a config the site no longer has; the site's `<prefix>/service` (ready while any box is ready, with
  every box's state in `detail`); and `<prefix>/stats` (every live box's stats).
- `<prefix>/available`: every box says `online` when it connects, with `offline` as its last
  will; a box that sees `offline` while it is alive says `online` again, so the site is
  available while any box is. The last box to leave says `offline` itself.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Optional

from ..bus import BasePlugin
from ..events import Event, service_event, stats_event
from ..sinks.mqtt import _jpeg, _read  # the single-box sink's picture helpers
from ..sinks.topics import AVAILABLE_OFFLINE, AVAILABLE_ONLINE, Topics
from .bridge import MqttBridge
from .connection import connect
from .mqttlink import MqttLink, Outgoing
from .presence import PERIOD_S, Presence

log = logging.getLogger(__name__)

_SERVICE_ORDER = ("ready", "loading", "stopping")  # the site's state: the best any live box has


def site_service(reports: dict[str, dict]) -> Event:
    """The site's service event from each live box's report."""
    states = {box: report.get("state", "loading") for box, report in sorted(reports.items())}
    state = next((s for s in _SERVICE_ORDER if s in states.values()), "stopping")
    loaded = sum(int((r.get("model") or {}).get("loaded", 0)) for r in reports.values())
    of = sum(int((r.get("model") or {}).get("of", 0)) for r in reports.values())
    ready = [box for box, s in states.items() if s == "ready"]
    others = [f"{box} {s}" for box, s in states.items() if s != "ready"]
    detail = f"{len(ready)} of {len(states)} boxes ready" + (f" ({', '.join(ready)})" if ready else "")
    return service_event(state, loaded, of, detail + (f"; {', '.join(others)}" if others else ""))


def site_stats(reports: dict[str, dict]) -> Event:
    return stats_event({"boxes": {box: report.get("stats") or {} for box, report in sorted(reports.items())},
                        "site": {"boxes": len(reports), "ready": sum(r.get("state") == "ready" for r in reports.values())}})


def _sans_identity(event: Event) -> str:
    """A service event's content (its id and time change every time)."""
    return json.dumps({k: v for k, v in event.data.items() if k not in ("id", "ts")}, sort_keys=True)


class ClusterMqtt(BasePlugin):
    name = "cluster-mqtt"

    def __init__(self, config: Any, holds: Callable[[str], bool]):
        self.config = config
        self.cluster = config.cluster
        self.box = self.cluster.box
        self.mqtt = config.sinks.mqtt
        self.qos = self.mqtt.qos
        self.topics = Topics(self.mqtt.topic_prefix)
        ha = config.sinks.homeassistant
        self.homeassistant = ha if ha is not None and ha.enabled else None
        self.cameras = [s.name for s in config.sources if s.enabled]
        self.holds = holds  # does this box hold the camera now (its lease)
        self.link = MqttLink(self.mqtt, self.box, will=(self.topics.available, AVAILABLE_OFFLINE.encode(), 1, True))
        self.bridge: Optional[MqttBridge] = MqttBridge(self.cluster, self.link) if self.cluster.bridge else None
        self.state: dict[str, Any] = {"state": "loading", "model": {"loaded": 0, "of": 0}}
        self.box_stats: dict[str, Any] = {}
        self.counters = {"discovery": 0, "service": 0, "stats": 0, "status": 0, "online_again": 0}
        self.loop: Any = None  # the link's loop thread
        self.presence: Optional[Presence] = None
        self._nc: Any = None
        self._speaking = threading.Event()
        self._stopping = threading.Event()
        self._said: dict[str, Any] = {"discovery": False, "service": None}  # what the speaker said since it connected
        self._configs: dict[str, bytes] = {}  # the discovery configs retained on the broker under our node
        self._force_discovery = False  # Home Assistant came online: send every config again

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self.link.subscriptions[self.topics.available] = self._on_available
        if self.homeassistant is not None:
            from ..sinks.homeassistant import birth_topic, node_configs

            self.link.subscriptions[birth_topic(self.homeassistant)] = self._on_birth
            self.link.subscriptions[node_configs(self.homeassistant)] = self._on_config
        self.link.on_connected.append(self._on_connected)
        self.link.start()
        self.loop = self.link.loop
        self._nc = self.loop.call(connect(self.cluster, f"streamproc-{self.box}-site"), timeout=self.cluster.connect_timeout_s * 3)
        self.presence = Presence(self._nc, f"{self.cluster.name}.site", self.box, self._report)
        self.loop.call(self.presence.start(), timeout=10)
        if self.bridge is not None:
            self.bridge.start()
        self.loop.spawn(self._speak())

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.loop is None:
            return
        self._stopping.set()
        if self.bridge is not None:
            self.bridge.stop()
        last = self.presence is None or set(self.presence.reports()) == {self.box}
        if self.presence is not None:
            self.loop.call(self.presence.leave(), timeout=5)
        if last and self.link.connected:  # nobody else speaks for the site now
            self.link.wait(self.link.publish([self._service_message(site_service({self.box: self._report()})),
                                              (self.topics.available, AVAILABLE_OFFLINE.encode(), 1, True)]), 3.0)
        try:
            if self._nc is not None:
                self.loop.call(self._nc.close(), timeout=5)
        except Exception:
            pass
        self.link.stop()  # and its loop

    def stats(self) -> dict[str, Any]:
        found: dict[str, Any] = {"connected": self.link.connected, "speaker": self._speaking.is_set(), **self.counters}
        if self.bridge is not None:
            found["bridge"] = self.bridge.stats()
        return found

    # -- this box's events -------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        if event.type == "service":
            self.state = {"state": event.data["state"], "model": dict(event.data["model"])}
            self.loop.spawn(self.presence.announce())  # the speaker hears it now, not in a second
        elif event.type == "stats":
            self.box_stats = dict(event.data.get("stats", {}))  # this plug-in's own under sinks.cluster-mqtt
            if self._speaking.is_set():
                self.link.publish([(self.topics.stats, site_stats(self.presence.reports()).to_bytes(), self.qos.stats, False)])
                self.counters["stats"] += 1
        elif event.source is not None and self.holds(event.source):
            self.link.publish(self._camera_messages(event))

    def _camera_messages(self, event: Event) -> list[Outgoing]:
        """A held camera's status and pictures (retained: current values)."""
        if event.type == "status":
            self.counters["status"] += 1
            return [(self.topics.status(event.source), event.to_bytes(), self.qos.status, True)]
        if event.type == "alert" and event.data.get("transition") == "raised":
            snapshot = (event.data.get("attachments") or {}).get("snapshot")
            picture = _read(snapshot["path"]) if snapshot else None
            return [(self.topics.alert_snapshot(event.source), picture, self.qos.snapshots, True)] if picture else []
        if event.type == "caption" and self.mqtt.snapshots and event.snapshot is not None:
            return [(self.topics.snapshot(event.source), _jpeg(event.snapshot), self.qos.snapshots, True)]
        return []

    def _report(self) -> dict:
        return {**self.state, "stats": self.box_stats, "bridge": self.bridge is not None}

    # -- speaking for the site ---------------------------------------------------------------------

    async def _speak(self) -> None:
        import asyncio

        while not self._stopping.is_set():
            try:
                self._speak_once()
            except Exception:  # a bug here must not end the loop
                log.exception("cluster MQTT: speaking for the site failed")
            await asyncio.sleep(PERIOD_S / 2)

    def _speak_once(self) -> None:
        reports = self.presence.reports()
        speaker = self.presence.settled() and min(reports) == self.box
        if speaker != self._speaking.is_set():
            log.info("cluster MQTT: %s %s for the site (%d box(es) alive)", self.box,
                     "speaks" if speaker else "no longer speaks", len(reports))
            (self._speaking.set if speaker else self._speaking.clear)()
            self._said = {"discovery": False, "service": None}
        if not speaker or not self.link.connected:
            return
        messages: list[Outgoing] = []
        if self.homeassistant is not None and not self._said["discovery"]:
            discovery = self._discovery()
            messages += discovery
            self._said["discovery"] = True
            self.counters["discovery"] += len(discovery)
        service = site_service(reports)
        if _sans_identity(service) != self._said["service"]:
            messages.append(self._service_message(service))
            self._said["service"] = _sans_identity(service)
            self.counters["service"] += 1
        if messages:
            self.link.publish(messages)

    def _service_message(self, service: Event) -> Outgoing:
        return (self.topics.service, service.to_bytes(), self.qos.status, True)

    def _discovery(self) -> list[Outgoing]:
        """The site's discovery configs that the broker does not already hold as they are (a new
        speaker, a restarted box: nothing), and an empty config for each retained one the site
        no longer has (Home Assistant removes that entity); all of them after HA's birth."""
        from ..sinks.homeassistant import discovery_messages, removals

        messages = discovery_messages(self.homeassistant, self.topics, self.config.rules, self.cameras,
                                      switches=False, snapshots=self.mqtt.snapshots, service_state=True)
        force, self._force_discovery = self._force_discovery, False
        current = {topic for topic, _ in messages}
        changed = [(t, p) for t, p in messages if force or self._configs.get(t) != p]
        gone = [r for topic, payload in list(self._configs.items()) for r in removals(current, topic, payload)]
        if changed or gone:
            log.info("cluster MQTT: %s publishes Home Assistant discovery for the site (%d of %d configs, %d removed)",
                     self.box, len(changed), len(messages), len(gone))
        return [(topic, payload, 1, True) for topic, payload in changed + gone]

    # -- MQTT callbacks (paho's thread) ----------------------------------------------------------

    def _on_connected(self, link: MqttLink) -> None:
        link.publish([(self.topics.available, AVAILABLE_ONLINE.encode(), 1, True)])
        self._said = {"discovery": False, "service": None}  # the speaker says it all again

    def _on_available(self, topic: str, payload: bytes) -> None:
        if payload == AVAILABLE_OFFLINE.encode() and not self._stopping.is_set():  # another box's last will
            self.counters["online_again"] += 1
            self.link.publish([(self.topics.available, AVAILABLE_ONLINE.encode(), 1, True)])

    def _on_birth(self, topic: str, payload: bytes) -> None:
        if payload.strip().lower() == b"online":
            log.info("Home Assistant came online: the speaker republishes discovery")
            self._force_discovery = True
            self._said["discovery"] = False

    def _on_config(self, topic: str, payload: bytes) -> None:
        if payload:
            self._configs[topic] = payload
        else:
            self._configs.pop(topic, None)


def cluster_mqtt(config: Any, holds: Callable[[str], bool]) -> Optional[ClusterMqtt]:
    """The box's MQTT side (a plug-in), or None when the config has no MQTT sink."""
    mqtt = config.sinks.mqtt
    return ClusterMqtt(config, holds) if mqtt is not None and mqtt.enabled else None
