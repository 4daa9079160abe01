"""Helpers for the engine tests: the transformers reference along the engine's own tokens,
the greedy-parity assertion, test images, and running code in a child process."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from streamproc.backends import GenerationParams

REPO = Path(__file__).resolve().parents[2]
RESULT_MARK = "@@RESULT@@ "  # the simulator prints on stdout too: results are marked lines


def image(seed: int, height: int, width: int) -> np.ndarray:
    """A random RGB image at a size the tiny model takes as is (multiples of 28)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def video(seed: int, frames: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


def hf_logits_along(hf, inputs, tokens: Sequence[int]) -> np.ndarray:
    """float32 [len(tokens), vocab]: the logits transformers gives before each of `tokens` when
    it is fed exactly those tokens (teacher forcing), computed the way HfBackend decodes
    (prefill with our position ids, then one cached step per token)."""
    import torch
    from transformers import DynamicCache

    model = hf.model
    embed = model.get_input_embeddings()
    with torch.inference_mode():
        text_model = model.model.language_model
        cache = DynamicCache(config=model.config)
        # The backend's own prefill arguments (ViT outputs over the pads, DeepStack for Qwen3-VL).
        out = text_model(**hf.prefill_inputs(inputs), past_key_values=cache, use_cache=True)
        rows = [model.lm_head(out.last_hidden_state[:, -1, :]).float()[0]]
        length = len(inputs.input_ids)
        for step, token in enumerate(tokens[:-1]):
            position = torch.full((3, 1, 1), inputs.next_position + step, dtype=torch.long)
            out = text_model(
                inputs_embeds=embed(torch.tensor([[int(token)]])),
                position_ids=position,
                past_key_values=cache,
                use_cache=True,
                cache_position=torch.tensor([length + step]),
            )
            rows.append(model.lm_head(out.last_hidden_state[:, -1, :]).float()[0])
    return torch.stack(rows).numpy()


def bf16_tie_tolerance(top: float) -> float:
    """Two bf16 steps at the size of the top logit: bf16 keeps 8 significant bits, so two
    logits closer than this can swap order between two correct bf16 computations (HF on the
    CPU and the TPU sum in different orders)."""
    return 2.0 * 2.0 ** (math.floor(math.log2(max(abs(top), 1e-6))) - 7)


def assert_greedy_parity(hf, inputs, tokens: Sequence[int], max_new_tokens: int, *, ties_allowed: bool = False) -> str:
    """The engine's greedy `tokens` for `inputs` against transformers' greedy tokens in bf16.

    Returns "exact" when they are equal. Otherwise every engine token must be HF's first choice
    within bf16_tie_tolerance when HF is fed the engine's own tokens (a logit tie, then the two
    answers legitimately diverge); that is accepted only with ties_allowed, and reported."""
    tokens = tuple(int(t) for t in tokens)
    reference = hf.describe(inputs, GenerationParams(max_new_tokens=max_new_tokens)).token_ids
    if tokens == tuple(reference):
        return "exact"
    logits = hf_logits_along(hf, inputs, tokens)
    lines, worst = [], 0.0
    for step, token in enumerate(tokens):
        row = logits[step]
        best = int(np.argmax(row))
        gap = float(row[best] - row[token])
        tolerance = bf16_tie_tolerance(float(row[best]))
        worst = max(worst, gap - tolerance)
        top2 = np.argsort(row)[::-1][:2]
        lines.append(
            f"  step {step}: engine {token} ({row[token]:.4f}), HF top {best} ({row[best]:.4f}), "
            f"gap {gap:.4f}, tie tolerance {tolerance:.4f}; HF top-2 {[(int(i), round(float(row[i]), 4)) for i in top2]}"
        )
    detail = "\n".join(lines)
    message = f"engine {tokens} != HF bf16 {tuple(reference)}\n{detail}"
    assert worst <= 0, f"not a tie: an engine token is not HF's first choice\n{message}"
    assert ties_allowed, f"tokens differ by a bf16 tie only, but this case is expected to match exactly\n{message}"
    return "tie"


def run_child(code: str, *, env: dict | None = None, timeout: float = 300) -> tuple[subprocess.CompletedProcess, list]:
    """Run `code` in a fresh Python (the repo on sys.path); returns the process and the JSON
    values it printed on lines starting with RESULT_MARK (`emit(value)` in the child)."""
    prelude = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        f"def emit(value):\n    sys.stdout.flush()\n    print({RESULT_MARK!r} + json.dumps(value), flush=True)\n"
    )
    child_env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    child_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=timeout, env=child_env
    )
    results = [json.loads(line[len(RESULT_MARK) :]) for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    return proc, results


def child_report(proc: subprocess.CompletedProcess) -> str:
    def tail(text: str) -> str:
        return "\n".join(text.strip().splitlines()[-25:])

    return f"exit code {proc.returncode}\n--- stdout (tail)\n{tail(proc.stdout)}\n--- stderr (tail)\n{tail(proc.stderr)}"
