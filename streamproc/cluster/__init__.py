"""Cluster mode: several boxes share cameras and batch jobs over NATS JetStream.

Modules (docs/scale-out.md has the design and the failure cases):
- `connection`: the asyncio loop thread and the NATS connection (nats-py, imported lazily);
- `layout`: the streams and KV buckets of one site, created idempotently;
- `leases`: camera tokens pulled while the box has room, renewed (confirmed by the lease
  consumer's leader), fenced per camera, shared fairly;
- `membership`: which boxes are alive, from per-box heartbeats on core NATS subjects;
- `ownership`: per camera epoch, rule state in KV and the fenced commit of each segment's events;
- `bridge`, `partitions`: the events stream to MQTT in N partitions, each camera in order;
- `mqttlink`: a box's MQTT connection, paho driven by an asyncio loop;
- `presence`: who is alive, and what each box says about itself (core NATS);
- `sitemqtt`: the box's MQTT side (a plug-in): the bridge, camera status, the site's speaker;
- `box`: `streamproc run` in cluster mode (the glue);
- `jobs`: batch captioning on a work queue (`streamproc caption --queue`, `streamproc worker`).

Nothing here is imported in single-box mode.
"""
