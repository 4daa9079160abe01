"""The TPU backend: streamproc's native engine over a Qwen2.5-VL or Qwen3-VL bmodel (or the CPU simulator).

All preprocessing (chat template, pixel rows, 3-D positions, ViT layout) comes from the shared
`streamproc.qwen` module, for the family the bmodel's nets name; the engine takes tensors, typed
vision chunks and token ids. No torch on this path.

This module is the only importer of `streamproc._native`: the CLI and the service reach the
runtime through the functions here (load_runtime, runtime_path, device_count, check_device,
quiet_simulator, engine_build).

One TpuBackend owns one engine (one KV cache, one request at a time). Several backends over the
same bmodel share its weights inside libbmrt, so a service runs one per stream in flight.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..config.model import TpuBackendConfig
from ..errors import Aborted, DeviceError, InputTooLarge, ModelError
from ..qwen import InputBuilder, ModelInputs, get_family
from .base import BackendCapabilities, GenerationParams, ModelGeometry, Result, Timings
from .geometry import bmodel_family, bmodel_geometry
from .bmodel_nets import read_bmodel_nets

log = logging.getLogger(__name__)

_open_backends: "weakref.WeakSet[TpuBackend]" = weakref.WeakSet()
OnToken = Callable[[int], Optional[bool]]  # True: end the answer after this token


@atexit.register
def _close_all() -> None:
    # libbmrt's static destructors crash if engines outlive the interpreter: free them first.
    for backend in list(_open_backends):
        backend.close()


def native_module():
    try:
        from .. import _native
    except ImportError as exc:  # a source checkout without the built extension
        raise DeviceError(f"the native engine is not built ({exc}); reinstall streamproc") from None
    return _native


PINNED_ABI = {"device_mem": 24, "shape": 36, "tensor": 72}  # runtime 1.30.2's struct sizes


def engine_build() -> tuple[bool, str]:
    """(whether the native module's runtime structs have the pinned sizes, its version line);
    DeviceError when it is not built."""
    native = native_module()
    sizes = native.abi_sizes()
    if any(sizes[k] != v for k, v in PINNED_ABI.items()):
        return False, f"runtime struct sizes differ from the pinned ABI: {sizes}"
    return True, f"streamproc._native {native.version()}"


def load_runtime(runtime_dir: Optional[str | Path] = None) -> str:
    """Load the Sophgo runtime (explicit folder, $STREAMPROC_BMRT_DIR, loader path, SDK) and
    return the path of the libbmrt loaded; DeviceError when none is found."""
    native = native_module()
    try:
        return native.load_runtime(str(runtime_dir or ""))
    except native.NativeError as exc:
        raise translate_native_error(exc, None) from None


def runtime_path() -> Optional[str]:
    """The libbmrt loaded in this process, or None."""
    return native_module().runtime_path()


def is_simulator(path: Optional[str]) -> bool:
    return bool(path) and (Path(path).parent / "libcmodel.so").exists()


def device_count(runtime_dir: Optional[str | Path] = None) -> int:
    """TPU devices the runtime sees (loading it first); the CPU simulator has one."""
    native = native_module()
    try:
        return native.device_count(str(runtime_dir or ""))
    except native.NativeError as exc:
        raise translate_native_error(exc, None) from None


def check_device(config: TpuBackendConfig, key: str = "backend.device_id (--device-id)") -> None:
    """DeviceError (exit 5) in one line naming `key` and the devices present when the runtime has
    no device config.device_id: libbmlib would abort the whole process on it."""
    count = device_count(config.runtime_dir)
    if not 0 <= config.device_id < count:
        present = "no TPU device" if count == 0 else "device 0" if count == 1 else f"devices 0..{count - 1}"
        raise DeviceError(f"{key} {config.device_id}: no such TPU device; the runtime sees {present}")


def quiet_simulator(runtime_dir: Optional[str | Path] = None) -> None:
    """Load the Sophgo runtime now and, if it is the CPU simulator, silence its C stdout (the CLI's
    output stays clean); a runtime that does not load is left for the backend to report."""
    try:
        load_runtime(runtime_dir)
    except DeviceError:
        return
    silence_simulator_stdout()


def translate_native_error(exc: BaseException, context: Optional[str]) -> Exception:
    """streamproc's typed error for an exception from streamproc._native (`context`: what failed,
    put before the native message)."""
    native = native_module()
    # The native message names the source checkout's script; installed users have the command.
    text = str(exc).replace("tools/bmodel/fetch_runtime.sh", "`streamproc runtime`")
    message = f"{context}: {text}" if context else text
    if isinstance(exc, native.AbortedError):
        return Aborted(message)
    if isinstance(exc, native.RuntimeNotFoundError):
        return DeviceError(message)
    if isinstance(exc, native.BmodelError):
        return ModelError(message)
    if isinstance(exc, native.InputError):
        return InputTooLarge(message)
    if isinstance(exc, native.DeviceError):
        return DeviceError(message)
    return exc if isinstance(exc, Exception) else DeviceError(message)


def fit_to_vit(builder: InputBuilder, max_patches: int, seq_length: int) -> InputBuilder:
    """The builder for this bmodel: no image or video frame larger than one ViT call takes (the
    bmodel's max_pixels), so images are resized to fit instead of being refused, and requests
    checked against the bmodel's sequence length."""
    vision = builder.vision
    limit = max_patches * vision.patch_size**2
    # The bmodel's own max_pixels (its ViT size), not the tokenizer folder's preprocessor_config,
    # which describes the checkpoint before conversion: as the seed demo sizes images.
    fitted = replace(
        vision,
        image_max_pixels=limit,
        video_max_pixels=limit,
        image_min_pixels=min(vision.image_min_pixels, limit),
        video_min_pixels=min(vision.video_min_pixels, limit),
    )
    return builder.with_limits(fitted, seq_length)


def silence_simulator_stdout() -> bool:
    """The CPU simulator prints debug lines on the C stdout. Send C-level stdout to /dev/null
    and keep Python's sys.stdout on a copy of the original, so the CLI's own output stays.
    Process-wide: only the CLI calls it, and only when the loaded runtime is the simulator."""
    if not is_simulator(runtime_path()):
        return False
    sys.stdout.flush()
    original = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdout = os.fdopen(original, "w", buffering=1, encoding="utf-8", errors="replace")
    return True


def vision_chunks(inputs: ModelInputs, max_patches: int, start: int = 0, max_grids: Optional[int] = None) -> list:
    """The engine's typed `vision` argument (streamproc._native.VisionChunk): per ViT call, whole
    frame pairs that fit `max_patches` (at most `max_grids` a call), each pair's merged tokens at
    its row relative to the first prefilled token (`start`); blocks before `start` are already in
    the KV cache and are skipped."""
    native = native_module()
    chunks = []
    for block in inputs.blocks:
        if block.offset < start:
            continue  # already in the KV cache from an earlier turn
        for chunk in block.vit_chunks(max_patches, max_grids):
            window, taps = chunk.window, chunk.interpolation
            chunks.append(
                native.VisionChunk(
                    chunk.pixel_values,
                    chunk.position_ids,
                    np.asarray(chunk.grid_offsets, dtype=np.int32) - start,
                    window_seqlens=None if window is None else window.cu_window_seqlens,
                    reverse_index=None if window is None else window.reverse_index,
                    pos_idx=None if taps is None else taps.pos_idx,
                    pos_weight=None if taps is None else taps.pos_weight,
                )
            )
    return chunks


@dataclass(frozen=True)
class RequestTimes:
    """Where one request's time went: the engine's own timers (streamproc._native.StepTimes: per
    phase wall and device seconds, copies, lock waits) and the backend's host work around them."""

    engine: Any  # streamproc._native.StepTimes
    host_prepare_s: float  # arrays and ViT chunks, before the native calls
    native_call_s: float  # wall time of the native prefill + generate calls (GIL released)


class TpuBackend:
    name = "tpu"

    @staticmethod
    def geometry(config: TpuBackendConfig) -> ModelGeometry:
        """What the bmodel takes, from its nets (read from the file; no weights, no runtime)."""
        return bmodel_geometry(config.bmodel, config.tokenizer)

    @staticmethod
    def input_builder(config: TpuBackendConfig) -> InputBuilder:
        """The tokenizer folder's builder, for the family the bmodel's nets name (no weights)."""
        family = bmodel_family(read_bmodel_nets(config.bmodel))
        return InputBuilder.from_pretrained(Path(config.tokenizer).expanduser(), family=family)

    def __init__(self, config: TpuBackendConfig, builder: Optional[InputBuilder] = None):
        self.config = config
        bmodel = Path(config.bmodel).expanduser()
        self.model_id = bmodel.name
        native = native_module()
        self._lock = threading.Lock()  # one request at a time
        # abort() against the request in progress: _busy says whether there is one.
        self._abort_lock = threading.Lock()
        self._busy = False
        self._engine = None
        check_device(config)  # libbmlib aborts the process on a device id it does not have
        try:
            self._engine = native.Engine(str(bmodel), config.device_id, str(config.runtime_dir or ""))
        except native.NativeError as exc:
            raise translate_native_error(exc, "cannot load the bmodel") from None
        self.info = self._engine.info  # streamproc._native.ModelInfo: the engine's capability queries
        try:
            family = get_family(self.info.family)
            tokenizer = Path(config.tokenizer).expanduser()
            self.builder = fit_to_vit(
                builder or InputBuilder.from_pretrained(tokenizer, family=family), self.info.max_patches, self.info.seq_length
            )
            self._capabilities = BackendCapabilities(
                family=family.family, seq_length=self.info.seq_length, keeps_history=self.info.supports_history,
                follow_up=True, sampling=self.info.has_sample_head, streaming=True,
                geometry=bmodel_geometry(bmodel, tokenizer),
            )
        except Exception:
            self.close()
            raise
        # A vit without a mask input attends across all it is given: one frame pair a call.
        self._max_grids = None if self.info.vit_masked else 1
        self.last_times: Optional[RequestTimes] = None  # of the last request
        _open_backends.add(self)
        log.info(
            "loaded %s (%s, %s, %s layout, seq %d, %d ViT patches) with %s",
            bmodel.name,
            family.label,
            self.info.chip or "unknown chip",
            self.info.layout,
            self.info.seq_length,
            self.info.max_patches,
            self.info.runtime,
        )

    # -- Backend protocol -------------------------------------------------------------------

    @property
    def capabilities(self) -> BackendCapabilities:
        return self._capabilities

    @property
    def seq_length(self) -> int:
        return self.info.seq_length

    @property
    def max_patches(self) -> int:
        return self.info.max_patches

    @property
    def inputs(self) -> InputBuilder:
        return self.builder

    def describe(self, inputs: ModelInputs, params: GenerationParams, on_token: Optional[OnToken] = None) -> Result:
        """A new conversation: the history is cleared first. `on_token` sees each token as it
        is generated (for streaming output)."""
        with self._lock, self._request():
            self._engine_or_fail().clear_history()
            return self._run(inputs, params, start=0, on_token=on_token)

    def follow_up(self, inputs: ModelInputs, params: GenerationParams, on_token: Optional[OnToken] = None) -> Result:
        """A further turn built with InputBuilder.follow_up: only its new tokens are prefilled
        when the bmodel keeps history (rolling back any later turn, so several questions can
        follow the same answer); otherwise the whole conversation runs again."""
        with self._lock, self._request():
            engine = self._engine_or_fail()
            if self.info.supports_history and engine.history_length >= inputs.cached_tokens > 0:
                engine.truncate_history(inputs.cached_tokens)
                return self._run(inputs, params, start=inputs.cached_tokens, on_token=on_token)
            engine.clear_history()
            return self._run(inputs, params, start=0, on_token=on_token)

    def abort(self) -> None:
        """Stop the request in progress, from any thread, without waiting: the engine stops before
        its next net launch (between ViT chunks, prefill chunks and layers, decode steps) and the
        request raises Aborted with the engine's history as before the request. No-op when idle."""
        with self._abort_lock:
            if self._busy and self._engine is not None:
                self._engine.abort()

    def close(self) -> None:
        """Free the engine. A request still running in another thread is aborted first, and the
        engine waits for it to leave the native call before it frees the device."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
        _open_backends.discard(self)

    # -- internals --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _request(self):
        with self._abort_lock:
            if self._engine is not None:
                self._engine.clear_abort()  # an abort that came after the last request ended
            self._busy = True
        try:
            yield
        finally:
            with self._abort_lock:
                self._busy = False

    def _engine_or_fail(self):
        if self._engine is None:
            raise DeviceError("the TPU backend is closed")
        return self._engine

    def vision_chunks(self, inputs: ModelInputs, start: int = 0) -> list:
        """Per ViT call: whole temporal grids that fit MAX_PATCHES (see `vision_chunks`)."""
        return vision_chunks(inputs, self.max_patches, start, self._max_grids)

    def _stream(self, engine, first: int, params: GenerationParams, sampling, on_token: "OnToken") -> tuple[list[int], bool]:
        """generate(), one token at a time so each can be shown as it comes; (tokens, whether
        on_token ended the answer)."""
        stops = set(self.builder.stop_ids)
        tokens = [first]
        if on_token(first) and first not in stops:
            return tokens, True
        while tokens[-1] not in stops and len(tokens) < params.max_new_tokens and engine.history_length < self.seq_length:
            tokens.append(engine.decode(tokens[-1], sampling))
            if on_token(tokens[-1]) and tokens[-1] not in stops:
                return tokens, True
        return tokens, False

    def _run(
        self, inputs: ModelInputs, params: GenerationParams, start: int, on_token: Optional[OnToken] = None
    ) -> Result:
        engine = self._engine_or_fail()
        begin = time.perf_counter()
        if params.do_sample and not self.info.has_sample_head:
            raise ModelError(
                f"{self.model_id} was built without --do_sample: it decodes greedily only (set generation.do_sample: false)"
            )
        ids = np.ascontiguousarray(inputs.input_ids[start:], dtype=np.int32)
        positions = np.ascontiguousarray(inputs.position_ids[:, start:], dtype=np.int32)
        native = native_module()
        sampling = native.SamplingParams(
            do_sample=params.do_sample,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            repetition_penalty=params.repetition_penalty,
        )
        if params.seed is not None:
            engine.seed(params.seed)
        chunks = self.vision_chunks(inputs, start)
        prepared = time.perf_counter()
        engine.reset_times()
        history_before = engine.history_length
        try:
            first = engine.prefill(ids, positions, chunks, next_position=inputs.next_position, sampling=sampling)
            ended = False
            if on_token is None:  # the whole loop in C++, without the GIL
                tokens = engine.generate(first, params.max_new_tokens, list(self.builder.stop_ids), sampling)
            else:
                tokens, ended = self._stream(engine, first, params, sampling, on_token)
        except BaseException as exc:
            # The request's history as before it, whatever failed (a native call, an on_token
            # callback): each native call restores what it found, but generate's starts after prefill.
            if engine.history_length > history_before:
                engine.truncate_history(history_before)
            if isinstance(exc, native.NativeError):
                raise translate_native_error(exc, self.model_id) from None
            raise
        native_s = time.perf_counter() - prepared
        device = engine.times()
        self.last_times = RequestTimes(engine=device, host_prepare_s=prepared - begin, native_call_s=native_s)
        stopped = bool(tokens) and tokens[-1] in self.builder.stop_ids
        text_ids = tokens[:-1] if stopped else tokens
        timings = Timings(
            preprocess_s=prepared - begin,
            vision_s=device.vit_s,
            prefill_s=device.prefill_s,
            decode_s=device.decode_s,
            total_s=time.perf_counter() - begin,
        )
        return Result(
            text=self.builder.decode(text_ids).strip(),
            prompt_tokens=int(inputs.input_ids.shape[0]),
            visual_tokens=int(inputs.visual_tokens),
            generated_tokens=len(tokens),
            model=self.model_id,
            finish_reason="stop" if stopped else "ended" if ended else "length",
            timings=timings,
            token_ids=tuple(int(t) for t in tokens),
        )
