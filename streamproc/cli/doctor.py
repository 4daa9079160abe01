"""`streamproc doctor [CONFIG]`: check everything the service needs, one line each."""
from __future__ import annotations

import argparse
import importlib
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Optional

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check packages, the native engine, the runtime, the model, the broker and the sources",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Prints one line per check with its verdict (ok, warn, FAIL, skip). Exit status 1 when "
        "any check failed.",
        epilog="examples:\n  streamproc doctor\n  streamproc doctor configs/camera.yaml --runtime-dir /opt/sophon/libsophon-current/lib",
    )
    parser.add_argument("config", type=Path, nargs="?", help="also check this config's model, broker and sources")
    parser.add_argument("--runtime-dir", type=Path, help="look for libbmrt here first")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per network check (default 5)")
    parser.set_defaults(func=run)


class Report:
    def __init__(self) -> None:
        self.failed = 0

    def line(self, verdict: str, what: str, detail: str = "") -> None:
        from ..redact import redact

        if verdict == FAIL:
            self.failed += 1
        print(f"{verdict:<5} {what}{': ' + redact(detail) if detail else ''}")

    def check(self, what: str, probe: Callable[[], tuple[str, str]]) -> None:
        try:
            verdict, detail = probe()
        except Exception as error:  # a check must report, never crash the doctor
            verdict, detail = FAIL, " ".join(str(error).split()) or type(error).__name__
        self.line(verdict, what, detail)


def run(args) -> int:
    report = Report()
    report.line(OK if sys.version_info >= (3, 10) else FAIL, "python", sys.version.split()[0])
    for module, needed in [("av", True), ("numpy", True), ("pydantic", True), ("yaml", True), ("paho.mqtt", True),
                           ("tokenizers", True), ("tqdm", True), ("prometheus_client", True),
                           ("torch", False), ("transformers", False)]:
        report.check(f"package {module}", lambda m=module, n=needed: _package(m, n))
    report.check("native engine", _native)
    config = None
    if args.config:
        from ..config import load_config

        try:
            config = load_config(args.config)
            report.line(OK, "config", f"{args.config}: {len(config.sources)} source(s)")
        except Exception as error:
            report.line(FAIL, "config", str(error))
    runtime_dir = args.runtime_dir or (
        config.backend.runtime_dir if config and config.backend and config.backend.type == "tpu" else None
    )
    report.check("Sophgo runtime", lambda: _runtime(runtime_dir))
    from .common import quiet_simulator

    quiet_simulator(runtime_dir)
    if config is not None:
        _check_config(report, config, args.timeout)
    print(f"{'all checks passed' if not report.failed else f'{report.failed} check(s) failed'}")
    return 1 if report.failed else 0


def _package(module: str, needed: bool) -> tuple[str, str]:
    try:
        loaded = importlib.import_module(module)
    except ImportError:
        return (FAIL, "not installed") if needed else (SKIP, "not installed (only the hf backend needs it)")
    return OK, str(getattr(loaded, "__version__", "installed"))


def _native() -> tuple[str, str]:
    from .. import _native

    sizes = _native.abi_sizes()
    pinned = {"device_mem": 24, "shape": 36, "tensor": 72}
    if any(sizes[k] != v for k, v in pinned.items()):
        return FAIL, f"runtime struct sizes differ from the pinned ABI: {sizes}"
    return OK, f"streamproc._native {_native.version()}"


def _runtime(runtime_dir: Optional[Path]) -> tuple[str, str]:
    from .. import _native

    try:
        path = _native.load_runtime(str(runtime_dir or ""))
    except _native.NativeError as error:
        return WARN, f"not found ({error}); only the tpu backend needs it"
    simulator = (Path(path).parent / "libcmodel.so").exists()
    return OK, f"{path}{' (CPU simulator)' if simulator else ''}"


def _check_config(report: Report, config, timeout: float) -> None:
    backend = config.backend
    if backend is None:
        report.line(FAIL, "backend", "the config has no backend section")
    elif backend.type == "tpu":
        report.check("bmodel", lambda: _bmodel(backend))
        report.check("tokenizer", lambda: _tokenizer(backend.tokenizer))
    else:
        report.check("model", lambda: _hf_model(backend.model))
    mqtt = config.sinks.mqtt
    if mqtt is not None and mqtt.enabled:
        report.check(f"broker {mqtt.host}:{mqtt.port}", lambda: _broker(mqtt, timeout))
    for source in config.sources:
        if source.enabled:
            report.check(f"source {source.name}", lambda s=source: _source(s, timeout))


def _bmodel(backend) -> tuple[str, str]:
    from .. import _native

    with _native.Engine(str(Path(backend.bmodel).expanduser()), backend.device_id, str(backend.runtime_dir or "")) as engine:
        info = engine.info()
    return OK, (
        f"{Path(backend.bmodel).name}: {info['chip']} {info['layout']} layout, {info['layers']} layers, seq "
        f"{info['seq_length']}, hidden {info['hidden']}, ViT {info['max_patches']} patches, "
        f"{'sampling heads' if info['has_sample_head'] else 'greedy only'}, {len(info['nets'])} nets"
    )


def _tokenizer(path: Path) -> tuple[str, str]:
    from ..qwen import InputBuilder

    builder = InputBuilder.from_pretrained(Path(path).expanduser())
    return OK, f"{path}: vocabulary of {len(builder.tokenizer.vocab)}"


def _hf_model(model: str) -> tuple[str, str]:
    path = Path(model).expanduser()
    if not path.exists():
        return WARN, f"{model} is not a local folder: transformers will look it up in the hub cache"
    missing = [f for f in ("config.json", "tokenizer.json") if not (path / f).exists()]
    weights = list(path.glob("*.safetensors")) or list(path.glob("*.bin"))
    if missing or not weights:
        return FAIL, f"{path}: missing {', '.join(missing + ([] if weights else ['weights (*.safetensors)']))}"
    return OK, f"{path}: {len(weights)} weight file(s)"


def _broker(mqtt, timeout: float) -> tuple[str, str]:
    started = time.perf_counter()
    with socket.create_connection((mqtt.host, mqtt.port), timeout=timeout):
        pass
    return OK, f"reachable in {1000 * (time.perf_counter() - started):.0f} ms (TCP; credentials are checked on start)"


def _source(source, timeout: float) -> tuple[str, str]:
    import av

    from ..ingest.errors import classify

    options = {"rtsp_transport": source.rtsp_transport} if source.live else {}
    try:
        with av.open(source.location, options=options, timeout=(timeout, timeout) if source.live else None) as c:
            if not c.streams.video:
                return FAIL, "no video track"
            stream = c.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            return OK, f"{stream.codec_context.name} {stream.width}x{stream.height}" + (f" @ {float(rate):.2f} fps" if rate else "")
    except Exception as error:
        raise classify(error, source.name, source.location, bool(source.live)) from None
