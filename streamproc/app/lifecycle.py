"""Run the application until its files are done or a signal arrives.

SIGINT/SIGTERM: stop intake, let the segments in flight finish (calls still running near
`service.shutdown_timeout_s` are aborted), flush the outbox, publish offline, exit 0. A second
signal exits at once (status 130), leaving undelivered events in the outbox for the next run.
A signal during the model load (minutes for a large model) is honoured at once: the application
starts on a thread of its own, so the main thread can stop the plug-ins (MQTT says offline) while
a backend is still loading; the caller then leaves without waiting for that load
(`App.loading()`), since a native load cannot be interrupted.

The exit code tells the truth about the run (README): 3 when every source failed, 5 when no
model worker is left, 6 when events were lost (a full outbox or disk; the log and
`outbox.dropped` say how many); 0 otherwise. A run also ends by itself once every source has
ended, live ones that gave up (`reconnect.max_attempts`) included.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Iterator

from . import App

log = logging.getLogger(__name__)

EXIT_NOW = 130
EXIT_SOURCE, EXIT_BACKEND, EXIT_SINK = 3, 5, 6


@contextlib.contextmanager
def stop_signals(doing: str, *, install: bool = True) -> Iterator[threading.Event]:
    """An event the first SIGINT/SIGTERM sets (logged with `doing`); a second signal exits at once
    (130). Installed only in the main thread; the previous handlers come back on exit."""
    requested = threading.Event()
    previous = {}

    def handle(signum, frame) -> None:
        if requested.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(EXIT_NOW)
        log.warning("%s: %s", signal.Signals(signum).name, doing)
        requested.set()

    if install and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handle)
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_until_done(app: App, *, install_signals: bool = True, poll_s: float = 0.2) -> int:
    """Start `app`, wait, stop it cleanly; the process exit code."""
    doing = "stopping (finishing the segments in flight; again to exit now)"
    with stop_signals(doing, install=install_signals) as requested:
        if not _start(app, requested, poll_s):
            log.info("stopped while the model was loading")
            app.stop()
            return 0
        workers_gone = False
        while not requested.wait(poll_s):
            if app.finished():
                log.info("all sources done")
                break
            if not app.workers_alive():
                workers_gone = True
                break
        delivered = app.stop()
        if not delivered and not app.events_lost():
            log.warning("some events were not delivered before the stop timeout; they stay in the outbox")
        return _exit_code(app, workers_gone)


def _start(app: App, requested: threading.Event, poll_s: float) -> bool:
    """Start `app` on a thread of its own; False if a stop was requested first. Errors of the
    start are raised here, after what did start is stopped."""
    failure: list[BaseException] = []

    def start() -> None:
        try:
            app.start()
        except BaseException as error:  # raised in the caller's thread below
            failure.append(error)

    starter = threading.Thread(target=start, name="start", daemon=True)
    starter.start()
    while starter.is_alive():
        if requested.wait(poll_s):
            return False
    if failure:
        app.stop(timeout_s=5.0)  # free what did start (models, sinks, threads)
        raise failure[0]
    return True


def _exit_code(app: App, workers_gone: bool) -> int:
    lost = app.events_lost()
    if workers_gone or app.workers_gave_up():
        log.error("no model worker is left (their backends kept failing): stopped")
        return EXIT_BACKEND
    if app.sources_failed():
        log.info("stopped: no source could be read (exit %d)", EXIT_SOURCE)
        return EXIT_SOURCE
    if lost:
        # the sink logged each loss as an error already; this says why the exit code is not 0
        log.warning("exit %d: %d event%s lost in this run (see outbox.dropped)", EXIT_SINK, lost, "s" * (lost != 1))
        return EXIT_SINK
    return 0
