"""`streamproc doctor [CONFIG]`: check what the service needs, one line each.

Fast by design (well under 3 s when nothing has to be loaded): packages are looked up, not
imported; a bmodel is checked from its file header (its nets), not loaded; a checkpoint from its
config files. With a config, only what it uses is checked: the Sophgo runtime only for a tpu
backend, torch only for an hf one, the broker only when the MQTT sink is on (with a real MQTT
CONNECT, so wrong credentials fail here). Every hint names a command an installed streamproc has.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Optional

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"

# module -> distribution name (for its version without importing it)
CORE_PACKAGES = {"av": "av", "numpy": "numpy", "pydantic": "pydantic", "yaml": "PyYAML", "paho.mqtt": "paho-mqtt",
                 "tokenizers": "tokenizers", "tqdm": "tqdm", "prometheus_client": "prometheus-client"}
HF_PACKAGES = {"torch": "torch", "transformers": "transformers"}
RUNTIME_HINT = "fetch the CPU simulator with `streamproc runtime`, or install libsophon on a TPU machine"


def add_parser(subparsers) -> None:
    from .common import HelpFormatter

    parser = subparsers.add_parser(
        "doctor",
        help="check packages, the runtime, the model, the broker and the sources a config uses",
        formatter_class=HelpFormatter,
        description="Prints one line per check with its verdict (ok, warn, FAIL, skip). Without a config it "
        "checks the installation; with one, only what that config uses, including whether its sampling and "
        "segmenting fit the model. Exit status 1 when any check failed.",
        epilog="examples:\n  streamproc doctor\n  streamproc doctor configs/camera.yaml\n"
        "  streamproc doctor configs/camera.yaml --runtime-dir /opt/sophon/libsophon-current/lib",
    )
    parser.add_argument("config", type=Path, nargs="?", help="also check this config's model, broker, sinks and sources")
    parser.add_argument("--runtime-dir", type=Path, help="look for libbmrt here first (default: $STREAMPROC_BMRT_DIR, the SDK)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per network check")
    parser.set_defaults(func=run)


class Report:
    def __init__(self) -> None:
        self.failed = 0

    def line(self, verdict: str, what: str, detail: str = "") -> None:
        from ..redact import redact

        if verdict == FAIL:
            self.failed += 1
        print(f"{verdict:<5} {what}{': ' + redact(detail) if detail else ''}", flush=True)

    def check(self, what: str, probe: Callable[[], tuple[str, str]]) -> None:
        try:
            verdict, detail = probe()
        except Exception as error:  # a check must report, never crash the doctor
            verdict, detail = FAIL, " ".join(str(error).split()) or type(error).__name__
        self.line(verdict, what, detail)


def run(args) -> int:
    report = Report()
    report.line(OK if sys.version_info >= (3, 10) else FAIL, "python", sys.version.split()[0])
    for module, dist in CORE_PACKAGES.items():
        report.check(f"package {module}", lambda m=module, d=dist: _package(m, d, True))
    config = None
    if args.config:
        from ..config import load_config

        try:
            config = load_config(args.config)
            report.line(OK, "config", f"{args.config}: {len(config.sources)} source(s)")
        except Exception as error:
            report.line(FAIL, "config", str(error))
    backend = config.backend if config is not None else None
    kind = getattr(backend, "type", None)
    if config is None or kind == "hf":
        needed = kind == "hf"
        for module, dist in HF_PACKAGES.items():
            report.check(f"package {module}", lambda m=module, d=dist: _package(m, d, needed))
    if config is None or kind == "tpu":
        runtime_dir = args.runtime_dir or (backend.runtime_dir if kind == "tpu" else None)
        report.check("native engine", _native)
        report.check("Sophgo runtime", lambda: _runtime(runtime_dir, needed=kind == "tpu"))
    if config is not None:
        _check_config(report, config, args.timeout)
    print(f"{'all checks passed' if not report.failed else f'{report.failed} check(s) failed'}")
    return 1 if report.failed else 0


def _package(module: str, dist: str, needed: bool) -> tuple[str, str]:
    import importlib.metadata  # here, not at the top: every command's parser imports this module

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        if needed:
            extra = " (pip install 'streamproc[hf]')" if dist in HF_PACKAGES.values() else " (pip install streamproc)"
            return FAIL, f"not installed{extra}"
        return SKIP, "not installed (only the hf backend needs it: pip install 'streamproc[hf]')"
    try:
        return OK, importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return OK, "installed"


def _native() -> tuple[str, str]:
    from ..backends.tpu import engine_build

    ok, line = engine_build()
    return (OK if ok else FAIL), line


def _runtime(runtime_dir: Optional[Path], needed: bool) -> tuple[str, str]:
    from ..backends.tpu import load_runtime
    from ..errors import DeviceError

    try:
        path = load_runtime(runtime_dir)
    except DeviceError as error:
        verdict = FAIL if needed else SKIP
        why = "the config's tpu backend needs it" if needed else "only the tpu backend needs it"
        found = str(error).replace(" (for the CPU simulator: `streamproc runtime`)", "")
        return verdict, f"not found ({found}); {why}: {RUNTIME_HINT}"
    simulator = (Path(path).parent / "libcmodel.so").exists()
    if simulator:
        from ..backends.tpu import silence_simulator_stdout

        silence_simulator_stdout()  # its debug lines would mix with the report
    return OK, f"{path}{' (CPU simulator)' if simulator else ''}"


def _check_config(report: Report, config, timeout: float) -> None:
    from ..config.checks import config_problems

    backend = config.backend
    if backend is None:
        report.line(FAIL, "backend", "the config has no backend section")
    else:
        if backend.type == "tpu":
            report.check("tokenizer", lambda: _tokenizer(backend.tokenizer))
        elif backend.type == "hf":
            report.check("model", lambda: _hf_model(backend.model))
        report.check("model geometry", lambda: _geometry(config))
    report.check("sinks", lambda: _sinks(config))
    problems = config_problems(config)  # what `run` refuses in its first second (config/checks.py)
    for key, why in problems:
        report.line(FAIL, key, why)
    mqtt = config.sinks.mqtt
    if mqtt is not None and mqtt.enabled:
        report.check(f"broker {mqtt.host}:{mqtt.port}", lambda: broker_check(mqtt, timeout))
    refused = {key for key, _ in problems}
    for index, source in enumerate(config.sources):
        if source.enabled and f"sources[{index}].path" not in refused:  # a missing file is said once
            report.check(f"source {source.name}", lambda s=source: _source(s, timeout))


def _geometry(config) -> tuple[str, str]:
    """The model's geometry from its files, and the config fitted to it (the rule `run` applies)."""
    from ..backends.geometry import fit_to_model

    fitted, geometry = fit_to_model(config)
    if geometry is None:
        return SKIP, f"backend {config.backend.type} does not state its geometry"
    s = fitted.sampling
    where = f"{geometry.layout} layout, " if geometry.layout else ""
    return OK, (
        f"{geometry.model}: {where}{geometry.describe()}; the config samples frames of up to {s.video_pixels} "
        f"pixels into segments for {fitted.segmenting.seq_length} tokens"
    )


def _sinks(config) -> tuple[str, str]:
    from ..config.checks import require_a_sink  # not the application: importing it costs 0.1 s

    require_a_sink(config)
    s = config.sinks
    names = [name for name, on in (("mqtt", s.mqtt is not None and s.mqtt.enabled), ("files", s.files.dir is not None),
                                   ("stdout", s.stdout.enabled), ("store", getattr(config, "store", None) is not None
                                                                  and config.store.enabled)) if on]
    return OK, ", ".join(names)


def _tokenizer(path: Path) -> tuple[str, str]:
    from ..qwen.tokenizer import QwenTokenizer

    tokenizer = QwenTokenizer.from_dir(Path(path).expanduser())
    return OK, f"{path}: vocabulary of {tokenizer.vocab_size}"


def _hf_model(model: str) -> tuple[str, str]:
    path = Path(model).expanduser()
    if not path.exists():
        return WARN, f"{model} is not a local folder: transformers will look it up in the hub cache"
    missing = [f for f in ("config.json", "tokenizer.json") if not (path / f).exists()]
    weights = list(path.glob("*.safetensors")) or list(path.glob("*.bin"))
    if missing or not weights:
        return FAIL, f"{path}: missing {', '.join(missing + ([] if weights else ['weights (*.safetensors)']))}"
    return OK, f"{path}: {len(weights)} weight file(s)"


def broker_check(mqtt, timeout: float) -> tuple[str, str]:
    """A real MQTT CONNECT with the config's credentials and TLS: the broker's CONNACK decides."""
    import socket
    import ssl

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from ..sinks.mqtt_publisher import make_tls_context

    v5 = mqtt.protocol == "5"
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"streamproc-doctor-{int(time.time() * 1000) % 10**9}",
                         protocol=paho.MQTTv5 if v5 else paho.MQTTv311)
    client.connect_timeout = timeout
    if mqtt.username is not None:
        client.username_pw_set(mqtt.username, mqtt.password.get_secret_value() if mqtt.password else None)
    tls = make_tls_context(mqtt)
    if tls is not None:
        client.tls_set_context(tls)
    answer: list = []
    client.on_connect = lambda c, userdata, flags, reason, props: answer.append(reason)
    started = time.perf_counter()
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=max(5, int(timeout) + 1))
    except ssl.SSLCertVerificationError as error:
        return FAIL, f"TLS: {error.verify_message or error} (check sinks.mqtt.tls.ca_file and sinks.mqtt.host)"
    except socket.gaierror as error:
        return FAIL, f"cannot resolve {mqtt.host} ({error.strerror or error}; check sinks.mqtt.host)"
    except (OSError, ssl.SSLError) as error:
        return FAIL, f"cannot connect: {error.strerror or error} (is the broker running? check sinks.mqtt.host/port)"
    try:
        deadline = time.monotonic() + timeout
        while not answer and time.monotonic() < deadline:
            if client.loop(0.05) != 0:
                break
    finally:
        if answer and not answer[0].is_failure:
            client.disconnect()
        with_socket = client.socket()
        if with_socket is not None:
            with_socket.close()
    if not answer:
        hint = "" if tls is not None else " (a TLS-only listener? check sinks.mqtt.tls)"
        return FAIL, f"no CONNACK within {timeout:g} s{hint}"
    reason = answer[0]
    if reason.is_failure:
        lowered = str(reason).lower()
        hint = " (check sinks.mqtt.username / password)" if "password" in lowered or "authori" in lowered else ""
        return FAIL, f"the broker refused the connection: {reason}{hint}"
    who = f" as {mqtt.username}" if mqtt.username else " (anonymous)"
    return OK, f"MQTT {mqtt.protocol} connected{who}{' over TLS' if tls else ''} in {1000 * (time.perf_counter() - started):.0f} ms"


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
