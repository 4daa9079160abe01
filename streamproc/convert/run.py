"""Running TPU-MLIR's llm_convert.py on a checkpoint with the fixes the project knows, and
checking the result on the simulator.

Known fixes (see tools/bmodel/README.md): the converter reads the released-checkpoint config form
and the original weight keys, so it gets a "converter view" of the checkpoint
(normalize_checkpoint.py, run in the converter's venv); it refuses an output folder inside the
checkpoint; its compile jobs print "/dev/tty" noise through GNU parallel.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..errors import ModelError
from ..paths import cache_dir
from .env import ConverterEnv, ConverterError, NORMALIZE_SCRIPT, check_free_space
from .plan import ConvertPlan

log = logging.getLogger(__name__)

QUANTIZE = ("w4bf16", "w4f16", "bf16", "f16")
NOISE = ("/dev/tty", "local:")


class UnsupportedCheckpoint(ModelError):
    """The folder is not a Qwen2.5-VL checkpoint the converter takes."""


@dataclass(frozen=True)
class BuildOptions:
    chip: str = "bm1684x"
    quantize: str = "bf16"
    dynamic: bool = False
    dynamic_vit: bool = False
    history: bool = False
    old_layout: bool = False  # history with tpu_mlir 1.21's 5-input block_N
    do_sample: bool = False
    strip_kernel: bool = False

    def flags(self, plan: ConvertPlan) -> list[str]:
        h, w = plan.max_pixels
        flags = ["-s", str(plan.seq_length), "-q", self.quantize, "-c", self.chip, "--max_pixels", f"{h},{w}"]
        if self.history and self.old_layout:
            flags += ["--use_block_with_kv", "--max_input_length", str(plan.input_length)]
        elif self.history:
            flags += ["--use_history_kv", "--chunk_length", str(plan.input_length)]
        if self.dynamic:
            flags.append("--dynamic")
        if self.dynamic_vit:
            flags.append("--dynamic_vit")
        if self.do_sample:
            flags.append("--do_sample")
        return flags

    def name(self, plan: ConvertPlan) -> str:
        kind = "oldhist" if self.history and self.old_layout else "history" if self.history else "dynamic" if self.dynamic else "static"
        return f"qwen2.5-vl_{kind}_{self.quantize}_{self.chip}_s{plan.seq_length}"


def check_checkpoint(checkpoint: Path) -> dict:
    config_path = checkpoint / "config.json"
    if not config_path.is_file():
        raise UnsupportedCheckpoint(f"{checkpoint} is not a checkpoint folder: it has no config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UnsupportedCheckpoint(f"{config_path} is not valid JSON: {exc}") from None
    model_type = config.get("model_type") or ""
    if model_type != "qwen2_5_vl":
        raise UnsupportedCheckpoint(
            f"{checkpoint} is a {model_type or 'unknown'} checkpoint; streamproc convert takes Qwen2.5-VL (model_type qwen2_5_vl)"
        )
    if not any(checkpoint.glob("*.safetensors")):
        raise UnsupportedCheckpoint(f"{checkpoint} has no *.safetensors weights (the converter reads safetensors only)")
    return config


def stream(command: list[str], cwd: Path, env: dict, log_path: Path, progress: Callable[[str], None]) -> tuple[int, list[str]]:
    """Run `command`, every line to `log_path`, meaningful ones to `progress`; (exit code, tail)."""
    tail: deque[str] = deque(maxlen=30)
    with open(log_path, "w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            log_file.write(line)
            line = line.rstrip()
            if not line or any(n in line for n in NOISE):
                continue
            tail.append(line)
            progress("  " + line[:160])
        return proc.wait(), list(tail)


def explain_failure(tail: list[str], log_path: Path, what: str) -> ConverterError:
    text = "\n".join(tail)
    if "No space left" in text:
        return ConverterError(f"{what}: the disk filled up (log: {log_path})")
    for marker in ("KeyError", "not support", "Unsupported", "unsupported"):
        hit = next((t for t in reversed(tail) if marker in t), None)
        if hit:
            return UnsupportedCheckpoint(f"{what}: the converter does not take this checkpoint: {hit.strip()[:200]} (log: {log_path})")
    last = next((t for t in reversed(tail) if "Error" in t or "error" in t), tail[-1] if tail else "no output")
    return ConverterError(f"{what} failed: {last.strip()[:200]} (log: {log_path})")


def convert(
    checkpoint: Path,
    out: Path,
    plan: ConvertPlan,
    options: BuildOptions,
    env: ConverterEnv,
    *,
    name: Optional[str] = None,
    progress: Callable[[str], None] = print,
) -> Path:
    """Convert `checkpoint` into OUT/NAME.bmodel (plus OUT/config/, the checkpoint's small files);
    returns the bmodel's path."""
    checkpoint, out = checkpoint.resolve(), out.resolve()
    check_checkpoint(checkpoint)
    if out == checkpoint or checkpoint in out.parents:
        raise ConverterError(f"--out {out} is inside the checkpoint folder; the converter refuses that: choose another folder")
    weights = sum(p.stat().st_size for p in checkpoint.glob("*.safetensors"))
    out.mkdir(parents=True, exist_ok=True)
    check_free_space(out, 3 * weights + 2**30, "the conversion")
    name = name or options.name(plan)
    work = out / f".{name}.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    environ = env.environ()

    view = work / "ckpt"
    code, tail = stream([str(env.python), str(NORMALIZE_SCRIPT), str(checkpoint), str(view)], work, environ,
                        work / "normalize.log", progress)
    if code != 0:
        raise explain_failure(tail, work / "normalize.log", "preparing the checkpoint")
    command = [str(env.python), str(env.tool("llm_convert.py")), "-m", str(view), *options.flags(plan), "-o", str(work / "out")]
    progress(f"running tpu_mlir {env.version}: llm_convert.py {' '.join(options.flags(plan))}")
    code, tail = stream(command, work, environ, work / "convert.log", progress)
    if code != 0:
        raise explain_failure(tail, work / "convert.log", "the conversion")
    built = sorted((work / "out").glob("*.bmodel"))
    if not built:
        raise ConverterError(f"the converter wrote no bmodel (log: {work / 'convert.log'})")
    if options.strip_kernel:  # the SDK runtime and the simulator bring their own kernel module
        subprocess.run([str(env.tool("model_tool")), "--kernel_remove", str(built[0])], cwd=work, env=environ,
                       check=True, capture_output=True)
    target = out / f"{name}.bmodel"
    shutil.move(str(built[0]), target)
    if (work / "out" / "config").is_dir():
        shutil.rmtree(out / "config", ignore_errors=True)
        shutil.move(str(work / "out" / "config"), out / "config")
    if os.environ.get("STREAMPROC_KEEP_CONVERT_WORK") != "1":
        shutil.rmtree(work, ignore_errors=True)
    return target


def simulator_runtime(chip: str) -> Optional[Path]:
    """The CPU simulator runtime for `chip`, where `streamproc runtime` and the tests put it."""
    variable = "STREAMPROC_BMRT_1688_DIR" if chip == "bm1688" else "STREAMPROC_BMRT_DIR"
    candidates = [os.environ.get(variable), str(cache_dir() / "tpu-runtime" / chip)]
    for candidate in candidates:
        if candidate and (Path(candidate) / "libcmodel.so").is_file():
            return Path(candidate)
    return None


CHECK_CHILD = """
import json, sys
from streamproc.backends import GenerationParams
from streamproc.backends.tpu import TpuBackend, silence_simulator_stdout
from streamproc.config.model import TpuBackendConfig
bmodel, tokenizer, runtime = sys.argv[1:4]
backend = TpuBackend(TpuBackendConfig(bmodel=bmodel, tokenizer=tokenizer, runtime_dir=runtime))
silence_simulator_stdout()
result = backend.describe(backend.inputs.build("Describe the video."), GenerationParams(max_new_tokens=3))
print("@@CHECK@@ " + json.dumps({"tokens": list(result.token_ids), "text": result.text, "layout": backend.info.layout,
      "seq_length": backend.info.seq_length, "max_patches": backend.info.max_patches}), flush=True)
backend.close()
"""


def check_on_simulator(bmodel: Path, tokenizer: Path, chip: str) -> Optional[dict]:
    """Load the bmodel on the simulator in a child process and answer a short text prompt; None
    when no simulator runtime is installed."""
    runtime = simulator_runtime(chip)
    if runtime is None:
        return None
    proc = subprocess.run([sys.executable, "-c", CHECK_CHILD, str(bmodel), str(tokenizer), str(runtime)],
                          capture_output=True, text=True, timeout=1800, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    for line in proc.stdout.splitlines():
        if line.startswith("@@CHECK@@ "):
            return json.loads(line[len("@@CHECK@@ "):])
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise ConverterError(f"the new bmodel does not answer on the simulator ({runtime}): {last[:200]}")
