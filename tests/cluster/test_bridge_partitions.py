"""The partitioned bridge against a real nats-server and mosquitto: two bridges (each with its own
connections, as on two boxes) share the partitions, every camera's captions reach MQTT in
stream order, none lost, none twice; when one bridge stops, the other takes its partitions
over (the leaving one unpins them) and forwards what came meanwhile, still in order."""
from __future__ import annotations

import asyncio
import time


from streamproc.bench.bridge import PREFIX, SITE, Subscriber, check, store_captions
from streamproc.cluster.bridge import MqttBridge, MqttLink
from streamproc.cluster.layout import ensure_layout
from streamproc.cluster.partitions import filters, partition_of
from streamproc.config.cluster import ClusterConfig
from streamproc.config.sinks import MqttConfig
from tests.support.mosquitto import Mosquitto
from tests.support.nats import NatsCluster

CAMERAS = [f"cam{i:02d}" for i in range(6)]


def test_partitions_are_stable_and_cover_every_camera():
    class Names:
        def event_subject(self, camera):
            return f"s.events.{camera}"

    parts = filters(Names(), CAMERAS, 4)
    assert sorted(s for subjects in parts for s in subjects if "~" not in s) == [f"s.events.{c}" for c in CAMERAS]
    assert all(subjects for subjects in parts)  # an empty partition gets a placeholder, never "everything"
    assert partition_of("cam03", 4) == partition_of("cam03", 4)


def _store(urls, cluster, first, count, create=False):
    async def go():
        import nats

        nc = await nats.connect(urls)
        js = nc.jetstream()
        names = await ensure_layout(js, cluster, CAMERAS) if create else None
        if names is None:
            from streamproc.cluster.layout import Names

            names = Names(cluster.name)
        await store_captions(js, names, CAMERAS, first, count)
        await nc.close()

    asyncio.run(go())


def test_two_bridges_share_partitions_in_order_and_take_over(cluster_prerequisites, tmp_path):
    with NatsCluster(tmp_path, 1, name="bridge") as nats_cluster, Mosquitto(tmp_path) as broker:
        cluster = ClusterConfig(servers=nats_cluster.urls, name=SITE, box="b0", replicas=1, bridge_partitions=4,
                                bridge_batch=8, lease={"ack_wait_s": 2.0})
        _store(nats_cluster.urls, cluster, 0, 200, create=True)
        subscriber = Subscriber(broker.port, 300)
        bridges = []
        try:
            for box in ("b0", "b1"):
                link = MqttLink(MqttConfig(port=broker.port, topic_prefix=PREFIX, client_id="test"), box)
                link.start()
                bridge = MqttBridge(cluster.model_copy(update={"box": box}), link)
                bridge.connect()
                bridges.append((link, bridge))
            time.sleep(1.5)  # each sees the other (presence every second): a share of 2 partitions each
            for _, bridge in bridges:
                bridge.start()
            deadline = time.monotonic() + 30
            while len(subscriber.got) < 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert check(subscriber.got, CAMERAS, 200) == {"lost": 0, "duplicated": 0, "out_of_order": 0, "unexpected": 0}
            assert all(bridge.stats()["batches"] > 0 for _, bridge in bridges), [b.stats() for _, b in bridges]

            link, bridge = bridges.pop(0)  # b0 leaves and unpins its partitions
            bridge.stop()
            link.stop()
            _store(nats_cluster.urls, cluster, 200, 100)
            assert subscriber.done.wait(30), len(subscriber.got)
            time.sleep(0.3)
            assert check(subscriber.got, CAMERAS, 300) == {"lost": 0, "duplicated": 0, "out_of_order": 0, "unexpected": 0}
        finally:
            for link, bridge in bridges:
                bridge.stop()
                link.stop()
            subscriber.stop()


def test_a_batch_sent_by_a_box_that_died_before_its_ack_is_not_sent_again(cluster_prerequisites, tmp_path):
    """b0 forwards a batch of each partition and dies before acking it; b1 (listening all along)
    gets those batches again after the pin's timeout and sends only what the broker never routed."""
    with NatsCluster(tmp_path, 1, name="bridge") as nats_cluster, Mosquitto(tmp_path) as broker:
        cluster = ClusterConfig(servers=nats_cluster.urls, name=SITE, box="b0", replicas=1, bridge_partitions=4,
                                bridge_batch=8, lease={"ack_wait_s": 2.0})
        _store(nats_cluster.urls, cluster, 0, 120, create=True)
        subscriber = Subscriber(broker.port, 120)
        links = [MqttLink(MqttConfig(port=broker.port, topic_prefix=PREFIX, client_id="test"), box) for box in ("b0", "b1")]
        for link in links:
            link.start()
        doomed = MqttBridge(cluster, links[0])
        survivor = MqttBridge(cluster.model_copy(update={"box": "b1"}), links[1])
        try:
            async def no_ack(ack) -> None:  # b0 dies after the broker's PUBACKs, before its JetStream ack
                ack.close()

            doomed._settle = no_ack
            doomed.start()
            deadline = time.monotonic() + 20
            while len(subscriber.got) < 24 and time.monotonic() < deadline:  # a batch of 8 of (at least) 3 partitions
                time.sleep(0.05)
            time.sleep(0.5)
            sent_by_doomed = len(subscriber.got)
            assert sent_by_doomed >= 24
            doomed.loop.loop.call_soon_threadsafe(doomed._stopping.set)  # no unpin, no goodbye: as if killed
            doomed.loop.call(doomed._nc.close(), timeout=5)
            doomed._pumps.cancel()  # its tasks end with the connection gone (no unpin reaches the server)
            doomed.loop.loop.call_soon_threadsafe(doomed.presence.stop)
            time.sleep(0.2)
            links[0].stop()
            survivor.start()
            assert subscriber.done.wait(30), len(subscriber.got)
            time.sleep(0.5)
            assert check(subscriber.got, CAMERAS, 120) == {"lost": 0, "duplicated": 0, "out_of_order": 0, "unexpected": 0}
            # each caption b0 sent came back to b1 and was recognised (and any redelivery of b1's own, on a
            # machine slow enough to miss the 2 s ack_wait, too)
            assert survivor.stats()["already_sent"] >= sent_by_doomed, (sent_by_doomed, survivor.stats())
        finally:
            survivor.stop()
            links[1].stop()
            subscriber.stop()


def test_events_stored_while_the_broker_is_down_reach_it_once_in_order(cluster_prerequisites, tmp_path):
    """The broker dies and comes back: the bridge gives the batches back and sends them after the
    reconnect (its own reconnect: paho runs without its network thread), in order, once."""
    with NatsCluster(tmp_path, 1, name="bridge") as nats_cluster, Mosquitto(tmp_path) as broker:
        cluster = ClusterConfig(servers=nats_cluster.urls, name=SITE, box="b0", replicas=1, bridge_partitions=2,
                                bridge_batch=8, lease={"ack_wait_s": 4.0})
        _store(nats_cluster.urls, cluster, 0, 40, create=True)
        subscriber = Subscriber(broker.port, 40)
        link = MqttLink(MqttConfig(port=broker.port, topic_prefix=PREFIX, client_id="test", reconnect_min_delay_s=0.5,
                                   reconnect_max_delay_s=1.0), "b0")
        link.start()
        bridge = MqttBridge(cluster, link)
        try:
            bridge.start()
            assert subscriber.done.wait(20)
            subscriber.stop()
            broker.kill()
            _store(nats_cluster.urls, cluster, 40, 40)
            time.sleep(3)  # the bridge tries, the broker is not there
            broker.start()
            after = Subscriber(broker.port, 40)  # subscribed before the bridge is back (it waits 0.5-1 s)
            assert after.done.wait(30), (len(after.got), bridge.stats(), link.connected)
            time.sleep(1.5)
            after.stop()
            received = subscriber.got + after.got
            assert check(received, CAMERAS, 80) == {"lost": 0, "duplicated": 0, "out_of_order": 0, "unexpected": 0}
            assert bridge.stats()["mqtt_failures"] > 0
        finally:
            bridge.stop()
            link.stop()
