"""Run a pipeline until its files are done or a signal arrives.

SIGINT/SIGTERM: stop intake, let the segments in flight finish, flush the outbox, publish
offline, exit 0. A second signal exits at once (status 130), leaving undelivered events in
the outbox for the next run.
"""
from __future__ import annotations

import logging
import os
import signal
import threading

from .pipeline import Pipeline

log = logging.getLogger(__name__)

EXIT_NOW = 130


def run_until_done(pipeline: Pipeline, *, install_signals: bool = True, poll_s: float = 0.2) -> int:
    """Start `pipeline`, wait, stop it cleanly; the process exit code."""
    requested = threading.Event()
    previous = {}

    def handle(signum, frame) -> None:
        if requested.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(EXIT_NOW)
        log.warning("%s: stopping (finishing the segments in flight; again to exit now)", signal.Signals(signum).name)
        requested.set()

    if install_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handle)
    try:
        try:
            pipeline.start()
        except BaseException:
            pipeline.stop(timeout_s=5.0)  # free what did start (models, sinks, threads)
            raise
        only_files = not pipeline.live_sources
        while not requested.wait(poll_s):
            if only_files and pipeline.finished():
                log.info("all sources done")
                break
        delivered = pipeline.stop()
        if not delivered:
            log.warning("some events were not delivered before the stop timeout; they stay in the outbox")
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
