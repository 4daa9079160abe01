"""A streamproc MQTT publisher in its own process, for tests that kill it.

    python -m tests.support.mqtt_child CONFIG.json --source cam1 --first 0 --count 20 --mode hold

CONFIG.json is a `sinks:` config section (SinksConfig). It prints one line per step on stdout
("started", "connected", "appended <i>", "holding", "flushed <ok>", "closed") so the test can
follow it, and logs to stderr through the redacting filter, as the CLI does.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from streamproc.cli.common import setup_logging
from streamproc.config.sinks import SinksConfig
from streamproc.errors import SinkError
from streamproc.sinks import create_sinks
from streamproc.events import caption_event
from tests.support.segments import make_result, make_segment


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--source", default="cam1")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.0)
    parser.add_argument("--wait-connected", type=float, default=0.0)
    parser.add_argument("--mode", choices=["hold", "flush"], default="flush")
    parser.add_argument("--flush-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    setup_logging(2)
    logging.getLogger("streamproc").setLevel(logging.DEBUG)
    with open(args.config) as handle:
        config = SinksConfig.model_validate(json.load(handle))
    (sink,) = create_sinks(config, [], [args.source])
    sink.start()
    say("started")
    if args.wait_connected:
        try:
            say("connected" if sink.wait_connected(args.wait_connected) else "not-connected")
        except SinkError as exc:
            say(f"refused {exc}")
    for i in range(args.first, args.first + args.count):
        sink.handle(caption_event(make_segment(args.source, i), make_result(f"caption {i}")))
        say(f"appended {i}")
        if args.interval:
            time.sleep(args.interval)
    if args.mode == "hold":
        say("holding")
        while True:
            time.sleep(3600)
    say(f"flushed {sink.flush(args.flush_timeout)}")
    sink.stop(5.0)
    say("closed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
