"""`streamproc run CONFIG`: the service."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the service described by a config file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Watch the configured sources, describe each segment with the model, apply the alert "
        "rules and publish events to the configured sinks. SIGINT/SIGTERM stop cleanly (exit 0); a second "
        "signal exits at once (130). File-only configs exit when every file is done.",
        epilog="examples:\n  streamproc run configs/camera.yaml\n  streamproc run site.yaml --log-format json",
    )
    parser.add_argument("config", type=Path, help="YAML config (see configs/)")
    parser.set_defaults(func=run, default_verbosity=1)


def run(args) -> int:
    from ..app import App
    from ..app.lifecycle import run_until_done
    from ..config import load_config
    from .common import quiet_simulator_if_used

    # check=True: source files, writable folders and the like fail here, in the first second
    # (exit 2), not after the model has loaded
    config = load_config(args.config, check=True)
    if config.cluster is not None:  # several boxes share the cameras (docs/scale-out.md)
        from ..cluster.box import run_box

        quiet_simulator_if_used(config)
        return run_box(config)
    app = App(config)
    quiet_simulator_if_used(config)
    logging.getLogger("streamproc").info("starting %d source(s) from %s", len(app.sources), args.config)
    code = run_until_done(app)
    if app.workers_alive() or app.loading():
        # A model call that did not stop even when aborted, or a model still loading when the stop
        # came: a normal exit would run the engines' exit handlers (and libbmrt's destructors)
        # under it, a hang or a crash. The sinks are closed and the outbox is on disk, so leave now.
        if app.workers_alive():
            logging.getLogger("streamproc").error("a model call did not stop when aborted; exiting without waiting for it")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
