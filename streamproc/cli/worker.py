"""`streamproc worker --queue nats://...`: caption jobs that `streamproc caption --queue` submitted."""
from __future__ import annotations

import logging
import signal
import threading

EPILOG = """\
examples:
  streamproc worker --queue nats://10.0.0.5:4222 --model Qwen/Qwen2.5-VL-3B-Instruct
  streamproc worker --queue nats://n1:4222,nats://n2:4222/archive --bmodel qwen2.5-vl-3b.bmodel
  streamproc worker --queue nats://10.0.0.5:4222 --config configs/batch.yaml --name box-3

The files must be readable at the same path on every worker (a shared mount). SIGINT/SIGTERM
finish the job in hand, then exit 0; a second signal exits at once and the job goes to another
worker after the queue's ack wait. See docs/scale-out.md.
"""


def add_parser(subparsers) -> None:
    from .caption import add_model_arguments
    from .common import HelpFormatter

    parser = subparsers.add_parser(
        "worker",
        help="caption jobs from a NATS JetStream queue (batch across boxes)",
        description="Take caption jobs from the queue one at a time, keep each job's lease alive while it runs, "
        "retry failures with back-off up to the delivery limit, and store the outputs for the submitter.",
        formatter_class=HelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("--queue", required=True, metavar="nats://HOST:PORT[/NAME]", help="the job queue (name default: streamproc)")
    add_model_arguments(parser)
    parser.add_argument("--name", help="this worker's name in the job states (default: the host name)")
    parser.add_argument("--ack-wait", type=float, default=30.0, help="seconds a job may go without progress before "
                        "another worker gets it; used when this worker creates the queue (default: 30)")
    parser.add_argument("--max-deliveries", type=int, default=3, help="attempts before a job is recorded as failed; "
                        "used when this worker creates the queue (default: 3)")
    parser.add_argument("--max-jobs", type=int, help="exit after finishing this many jobs (default: run until stopped)")
    parser.set_defaults(func=run, default_verbosity=1, prompt=None, max_new_tokens=None, seq_length=None, max_pixels=None)


def run(args) -> int:
    from ..backends.base import create_backend
    from ..backends.geometry import fit_to_model
    from ..cluster.jobs import Queue
    from ..cluster.worker import run_worker
    from ..errors import UsageError
    from .caption import build_config
    from .common import quiet_simulator_if_used

    if args.ack_wait < 1 or args.max_deliveries < 1:
        raise UsageError("--ack-wait must be at least 1 s and --max-deliveries at least 1")
    queue = Queue.parse(args.queue, ack_wait_s=args.ack_wait, max_deliveries=args.max_deliveries)
    config, _ = fit_to_model(build_config(args))
    quiet_simulator_if_used(config)
    stop = threading.Event()

    def handle(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        logging.getLogger("streamproc").warning("%s: finishing the job in hand, then exiting", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handle)
    backend = create_backend(config.backend)
    try:
        finished = run_worker(queue, config, backend, name=args.name, stop=stop, max_jobs=args.max_jobs)
    finally:
        backend.close()
    logging.getLogger("streamproc").info("worker: %d job(s) finished", finished)
    return 0
