"""The transformers reference backend: a Qwen2.5-VL or Qwen3-VL checkpoint on the CPU or a CUDA GPU.

It is fed from streamproc.qwen.ModelInputs, exactly what the TPU engine gets: each visual block's
pixel rows go through the model's ViT, the merged outputs replace the block's pad embeddings (and,
for Qwen3-VL, its DeepStack features go to the language model's first layers at the visual
positions), the language model prefills with our 3-D position ids and decodes from `next_position`. The loop is
ours (not generate()) so both backends share position ids and phase timings; a test checks it
gives the same greedy tokens as generate() on the processor's inputs. Sampling uses transformers'
own logits processors, in generate()'s order: repetition penalty, temperature, top-k, top-p.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Optional

from ..config.model import HfBackendConfig
from ..errors import Aborted, BackendError, ModelError
from ..qwen import InputBuilder, ModelInputs
from .base import BackendCapabilities, GenerationParams, ModelGeometry, Result, Timings
from .checkpoint import check_model_dir, require_hf_extra, resolve_model_dir
from .geometry import checkpoint_geometry

log = logging.getLogger(__name__)


class HfBackend:
    """Backend protocol over the family's transformers class (Qwen2_5_VL / Qwen3VL ForConditionalGeneration)."""

    name = "hf"

    @staticmethod
    def geometry(config: HfBackendConfig) -> ModelGeometry:
        """What the checkpoint takes, from its config files (no weights, no torch)."""
        return checkpoint_geometry(resolve_model_dir(config.model))

    @staticmethod
    def input_builder(config: HfBackendConfig) -> InputBuilder:
        return InputBuilder.from_pretrained(resolve_model_dir(config.model))

    def __init__(self, config: HfBackendConfig, inputs: Optional[InputBuilder] = None):
        require_hf_extra()
        import torch
        import transformers

        self.config = config
        self.model_id = config.model
        self.path = resolve_model_dir(config.model)
        model_config, family = check_model_dir(self.path)
        self.device = torch.device(self._pick_device(config.device))
        self.dtype = self._pick_dtype(config.dtype, model_config)
        self._inputs = inputs or InputBuilder.from_pretrained(self.path)
        started = time.perf_counter()
        try:
            kwargs: dict[str, Any] = {"dtype": self.dtype}
            if config.attn_implementation:
                kwargs["attn_implementation"] = config.attn_implementation
            model_class = getattr(transformers, family.hf_class)  # transformers' lazy module: by name
            model = model_class.from_pretrained(str(self.path), **kwargs)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(f"transformers cannot load {self.path}: {exc}") from None
        self.model = model.to(self.device).eval()
        self.load_s = time.perf_counter() - started
        self._embed = self.model.get_input_embeddings()
        self._vit_dtype = self.model.model.visual.dtype
        self._deepstack = bool(self._inputs.vision.deepstack_indexes)  # the ViT also returns DeepStack features
        self._capabilities = BackendCapabilities(
            family=family.family, seq_length=None, keeps_history=False, follow_up=True, sampling=True,
            streaming=True, geometry=checkpoint_geometry(self.path),
        )
        self._abort = threading.Event()  # abort(): checked between the request's model steps
        self._running = threading.Lock()  # held while a request runs (abort() is a no-op otherwise)
        log.info("loaded %s on %s as %s in %.2f s", self.model_id, self.device, self.dtype, self.load_s)

    @staticmethod
    def _pick_device(device: str) -> str:
        import torch

        if device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise ModelError("device cuda was asked for, but torch sees no CUDA GPU")
        return device

    def _pick_dtype(self, dtype: str, model_config: dict[str, Any]):
        import torch

        if dtype != "auto":
            return getattr(torch, dtype)
        if self.device.type == "cpu":
            return torch.float32  # bf16 matmuls on CPUs are slow and add rounding for nothing
        text = model_config.get("text_config") or {}
        saved = model_config.get("torch_dtype") or model_config.get("dtype") or text.get("dtype") or "bfloat16"
        if saved == "bfloat16" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return getattr(torch, saved, torch.bfloat16)

    # -- Backend protocol ---------------------------------------------------------------------

    @property
    def capabilities(self) -> BackendCapabilities:
        return self._capabilities

    @property
    def seq_length(self) -> Optional[int]:
        return None  # no hard limit: transformers grows its cache as needed

    @property
    def inputs(self) -> InputBuilder:
        return self._inputs

    def abort(self) -> None:
        """Stop the request in progress (it raises Aborted at its next step); no-op when idle."""
        if self._running.locked():
            self._abort.set()

    def _check_abort(self) -> None:
        if self._abort.is_set():
            self._abort.clear()
            raise Aborted(f"{self.model_id}: the request was aborted")

    def describe(self, inputs: ModelInputs, params: GenerationParams, on_token=None) -> Result:
        """`on_token` sees each generated token id as it comes (streaming output); an exception
        it raises ends the request and propagates."""
        import torch

        try:
            with self._running, torch.inference_mode():
                try:
                    return self._describe(inputs, params, on_token)
                finally:
                    self._abort.clear()  # an abort that came too late for this request expires with it
        except torch.cuda.OutOfMemoryError as exc:
            raise BackendError(f"the GPU ran out of memory: {exc}") from None
        except RuntimeError as exc:
            raise BackendError(f"transformers failed: {exc}") from exc

    def follow_up(self, inputs: ModelInputs, params: GenerationParams, on_token=None) -> Result:
        """A further turn: the whole conversation runs again (no KV cache is kept between turns)."""
        return self.describe(inputs, params, on_token)

    def close(self) -> None:
        import torch

        self.model = None  # type: ignore[assignment]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- one request ------------------------------------------------------------------------------

    def _sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def prefill_inputs(self, inputs: ModelInputs) -> dict[str, Any]:
        """The language model's prefill arguments for `inputs`: the embeddings with each visual
        block's ViT output over its pad tokens, our position ids and, for Qwen3-VL, the DeepStack
        features with the visual positions they are added at (transformers' own arguments)."""
        import torch

        ids = torch.from_numpy(inputs.input_ids).to(self.device).view(1, -1)
        embeds = self._embed(ids)
        deepstack: list[list[Any]] = []
        for block in inputs.blocks:
            self._check_abort()
            rows = torch.from_numpy(block.pixel_values).to(self.device, self._vit_dtype)
            out = self.model.model.visual(rows, grid_thw=torch.tensor([block.grid_thw], device=self.device))
            merged, features = out if self._deepstack else (out, [])
            if merged.shape[0] != block.tokens:
                raise ModelError(f"the ViT gave {merged.shape[0]} tokens for a block of {block.tokens}")
            per_grid = block.grid_tokens
            for k in range(block.grid_thw[0]):
                at = block.grid_offset(k)
                embeds[0, at : at + per_grid] = merged[k * per_grid : (k + 1) * per_grid].to(embeds.dtype)
            deepstack.append(list(features))
        kwargs: dict[str, Any] = {
            "inputs_embeds": embeds,
            "position_ids": torch.from_numpy(inputs.position_ids).to(self.device).view(3, 1, -1),
        }
        if self._deepstack and inputs.blocks:
            layers = zip(*deepstack)  # per DeepStack layer, every block's features in token order
            kwargs["visual_pos_masks"] = torch.from_numpy(inputs.visual_mask()).to(self.device).view(1, -1)
            kwargs["deepstack_visual_embeds"] = [torch.cat(layer).to(embeds.dtype) for layer in layers]
        return kwargs

    def _describe(self, inputs: ModelInputs, params: GenerationParams, on_token=None) -> Result:
        import torch
        from transformers import DynamicCache

        if self.model is None:
            raise BackendError("the backend is closed", retryable=False)
        timings = Timings()
        started = time.perf_counter()
        ids = torch.from_numpy(inputs.input_ids).to(self.device).view(1, -1)
        prefill = self.prefill_inputs(inputs)
        self._sync()
        timings.vision_s = time.perf_counter() - started

        self._check_abort()
        mark = time.perf_counter()
        text_model = self.model.model.language_model
        cache = DynamicCache(config=self.model.config)
        hidden = text_model(**prefill, past_key_values=cache, use_cache=True)
        logits = self.model.lm_head(hidden.last_hidden_state[:, -1, :]).float()
        choose = _TokenChooser(params, self.device)
        history = ids
        token = choose(history, logits)
        self._sync()
        timings.prefill_s = time.perf_counter() - mark

        mark = time.perf_counter()
        generated: list[int] = []
        stop_ids = set(self._inputs.stop_ids)
        length = history.shape[1]
        finish = "length"
        while True:
            generated.append(token)
            if on_token is not None and on_token(token) and token not in stop_ids:
                finish = "ended"  # the caller's on_token ended the answer here
                break
            if token in stop_ids:
                finish = "stop"
                break
            if len(generated) >= params.max_new_tokens:
                break
            self._check_abort()
            step = len(generated) - 1
            token_tensor = torch.tensor([[token]], device=self.device)
            history = torch.cat([history, token_tensor], dim=1)
            position = torch.full((3, 1, 1), inputs.next_position + step, device=self.device, dtype=torch.long)
            cache_position = torch.tensor([length + step], device=self.device)
            hidden = text_model(
                inputs_embeds=self._embed(token_tensor),
                position_ids=position,
                past_key_values=cache,
                use_cache=True,
                cache_position=cache_position,
            )
            logits = self.model.lm_head(hidden.last_hidden_state[:, -1, :]).float()
            token = choose(history, logits)
        self._sync()
        timings.decode_s = time.perf_counter() - mark
        timings.total_s = time.perf_counter() - started
        return Result(
            text=self._inputs.decode(generated, skip_special_tokens=True).strip(),
            prompt_tokens=inputs.total_tokens,
            visual_tokens=inputs.visual_tokens,
            generated_tokens=len(generated),
            model=self.model_id,
            finish_reason=finish,
            timings=timings,
            token_ids=tuple(generated),
        )


class _TokenChooser:
    """Greedy or sampled choice of the next token with transformers' logits processors."""

    def __init__(self, params: GenerationParams, device):
        import torch
        from transformers.generation.logits_process import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.sample = params.do_sample
        processors = LogitsProcessorList()
        if params.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(penalty=params.repetition_penalty))
        if params.do_sample:
            if params.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(params.temperature))
            if params.top_k:
                processors.append(TopKLogitsWarper(top_k=params.top_k))
            if params.top_p < 1.0:
                processors.append(TopPLogitsWarper(top_p=params.top_p))
        self.processors = processors
        self.generator = None
        if params.do_sample:
            self.generator = torch.Generator(device=device)
            if params.seed is not None:
                self.generator.manual_seed(params.seed)
            else:
                self.generator.seed()

    def __call__(self, history, logits) -> int:
        import torch

        scores = self.processors(history, logits)
        if not self.sample:
            return int(torch.argmax(scores, dim=-1)[0])
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, num_samples=1, generator=self.generator)[0, 0])
