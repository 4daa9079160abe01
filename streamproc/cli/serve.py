"""`streamproc serve`: the model behind an OpenAI-compatible API (/v1/chat/completions)."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from ..errors import UsageError

EPILOG = """\
examples:
  streamproc serve --bmodel qwen2.5-vl-3b.bmodel --tokenizer qwen2.5-vl-3b/ --engines 2
  streamproc serve configs/camera.yaml --port 8000          # the config's backend and generation
  streamproc serve --model Qwen/Qwen2.5-VL-3B-Instruct --media-dir /srv/snapshots
  STREAMPROC_API_KEY=secret streamproc serve --bmodel m.bmodel --tokenizer tok/ --host 0.0.0.0

clients: any OpenAI SDK with base_url http://HOST:PORT/v1, model = the served name (GET /v1/models).
Images as data: URLs (or local paths inside --media-dir); remote URLs are refused. See docs/openai.md.
Listening beyond 127.0.0.1 needs a key ($STREAMPROC_API_KEY, or the config's http.api_key) unless
--allow-anonymous; every route but /healthz needs it then (docs/security.md). SIGTERM stops, exit 0.
"""


def add_parser(subparsers) -> None:
    from .common import HelpFormatter

    parser = subparsers.add_parser(
        "serve",
        help="serve the model over an OpenAI-compatible HTTP API",
        formatter_class=HelpFormatter,
        description="Serve a Qwen2.5-VL bmodel (TPU or simulator) or transformers checkpoint over OpenAI's "
        "chat-completions API, for Frigate, Home Assistant, Open WebUI and scripts.",
        epilog=EPILOG,
    )
    parser.add_argument("config", nargs="?", type=Path, help="YAML config whose backend (and generation) to serve")
    parser.add_argument("--bmodel", type=Path, help="Qwen2.5-VL bmodel instead of a config")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer folder of the bmodel (default: beside the bmodel)")
    parser.add_argument("--runtime-dir", type=Path, help="folder with libbmrt.so (default: $STREAMPROC_BMRT_DIR, SDK)")
    parser.add_argument("--device-id", type=int, default=0, help="TPU device (default 0)")
    parser.add_argument("--model", help="transformers checkpoint folder or hub id instead of a bmodel")
    parser.add_argument("--engines", type=int, help="TPU engines = requests run at once (default: the config's "
                        "backend.engines, else 1)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--served-model-name", help="the model id clients send (default: the bmodel's file name or "
                        "the checkpoint's id)")
    parser.add_argument("--queue-size", type=int, default=16, help="requests that may wait for an engine; more get "
                        "429 with Retry-After (default 16)")
    parser.add_argument("--api-key-env", default="STREAMPROC_API_KEY", help="environment variable holding the API "
                        "key clients must send as a Bearer token; unset or empty: no key (default STREAMPROC_API_KEY)")
    parser.add_argument("--media-dir", type=Path, action="append", default=[], help="a folder whose files requests "
                        "may name by local path (repeat for several; default: none, data: URLs only)")
    parser.add_argument("--max-tokens", type=int, default=512, help="answer limit when a request gives none "
                        "(default 512, capped by the context)")
    parser.add_argument("--greedy-fallback", action="store_true", help="on a bmodel without a sampling head, decode "
                        "sampling requests greedily instead of answering 400")
    parser.add_argument("--max-body-mb", type=int, default=64, help="largest request body in MiB (images come "
                        "base64-encoded in it); larger ones get 413 (default 64)")
    parser.add_argument("--log-content", action="store_true", help="log the messages' text (default: counts only)")
    parser.add_argument("--allow-anonymous", action="store_true", help="allow --host beyond 127.0.0.1 without an "
                        "API key (not advised: anyone who reaches the port can use the model)")
    parser.add_argument("--public-metrics", action="store_true", help="serve /metrics without the key (for a "
                        "scraper that cannot send one)")
    parser.add_argument("--allowed-host", action="append", default=[], help="a host name clients use for this "
                        "server besides its address and this machine's name (repeat; '*' turns the check off)")
    parser.set_defaults(func=run, default_verbosity=1)


def backend_config(args):
    """The backend section to serve and its generation settings: from the config file or from the
    flags. The whole config, when one was given, is kept in `args.loaded_config` (its caption
    store, if enabled, is served too: search, summaries and the web view)."""
    from ..config.model import HfBackendConfig, TpuBackendConfig

    given = [bool(args.config), bool(args.bmodel), bool(args.model)]
    if sum(given) != 1:
        raise UsageError("give a config file, or --bmodel FILE (TPU), or --model DIR_OR_HUB_ID (transformers)")
    if args.config:
        from ..config import load_config

        config = load_config(args.config)
        if config.backend is None:
            raise UsageError(f"{args.config} has no backend section")
        args.loaded_config = config
        return config.backend, config.generation
    if args.model:
        return HfBackendConfig(model=args.model), None
    tokenizer = args.tokenizer
    if tokenizer is None:
        beside = [args.bmodel.parent, args.bmodel.with_suffix("")]
        tokenizer = next((d for d in beside if (d / "tokenizer.json").exists()), None)
        if tokenizer is None:
            raise UsageError("--tokenizer is needed: no tokenizer.json beside the bmodel")
    return TpuBackendConfig(bmodel=args.bmodel, tokenizer=tokenizer, runtime_dir=args.runtime_dir,
                            device_id=args.device_id), None


def http_config(args, api_key: Optional[str]):
    """The port's settings from the flags, plus the config's http.api_key and allowed hosts when a
    config was given. Beyond loopback without a key is refused here, naming the flags."""
    from ..config.http import HttpConfig, exposure_problem

    config = getattr(args, "loaded_config", None)
    keys = [api_key] if api_key else []
    hosts = list(args.allowed_host)
    if config is not None:
        keys += list(config.http.keys())
        hosts += config.http.allowed_hosts
    problem = exposure_problem(args.host, bool(keys), args.allow_anonymous)
    if problem:
        raise UsageError(f"{problem}: set ${args.api_key_env} (or http.api_key in the config), "
                         "use --host 127.0.0.1, or pass --allow-anonymous")
    return HttpConfig(host=args.host, port=args.port, api_key=keys, allow_anonymous=args.allow_anonymous,
                      public_metrics=args.public_metrics, allowed_hosts=hosts)


def run(args) -> int:
    from ..backends.base import GenerationParams
    from ..http import HttpServer
    from ..openai_api.app import ServeOptions, create_app
    from ..openai_api.launch import load_backends, served_model
    from ..openai_api.media import MediaPolicy
    from ..openai_api.pool import EnginePool
    from ..app.lifecycle import stop_signals
    from ..web.asgi import serve_routes

    if args.queue_size < 0 or (args.engines is not None and args.engines < 1) or min(args.max_tokens, args.max_body_mb) < 1:
        raise UsageError("--queue-size must be >= 0, --engines, --max-tokens and --max-body-mb >= 1")
    config, generation = backend_config(args)
    http = http_config(args, os.environ.get(args.api_key_env) or None)
    if config.type == "tpu":
        from .common import quiet_simulator

        quiet_simulator(config.runtime_dir)
    log = logging.getLogger("streamproc.openai_api")
    with stop_signals("stopping the server") as stop:
        engines = args.engines or getattr(config, "engines", 1)
        backends = load_backends(config, engines)
        pool = EnginePool(backends, args.queue_size)
        try:
            base = GenerationParams.from_config(generation) if generation else GenerationParams()
            served = served_model(backends[0], args.served_model_name, args.max_tokens, args.greedy_fallback, base)
            options = ServeOptions(log_content=args.log_content, media=MediaPolicy.of(args.media_dir))
            app = create_app(pool, served, options, http, serve_routes(getattr(args, "loaded_config", None)),
                             max_body_bytes=args.max_body_mb * 1024 * 1024)
            try:
                server = HttpServer(app, http.host, http.port, http.limits)
            except OSError as error:
                raise UsageError(f"cannot listen on {http.host}:{http.port}: {error.strerror or error}") from None
            server.start()
            log.info(
                "serving %s on %s/v1 (%d engine%s, queue %d, context %s, %s, API key %s)",
                served.name, server.url, len(backends), "" if len(backends) == 1 else "s", args.queue_size,
                served.context_length or "unlimited", "sampling" if served.can_sample else "greedy only",
                "on" if http.keys() else "off",
            )
            while not stop.wait(0.5):  # a signal's handler runs between these waits
                pass
            server.stop()
            app.state.api.close()
        finally:
            pool.close()
    log.info("server stopped")
    return 0
