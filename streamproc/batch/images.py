"""Still images given to `streamproc caption`: each described as an image (one vision block at
the model's image size), not as a one-frame video. Outputs sit beside the videos' ones: a JSONL
line, and an SRT/WebVTT cue of one second, so a folder of mixed media captions alike.

Images are in the resume manifest like videos (captioned again only when changed, or with
--force), and with a caption store each one is a caption event of its own source (its stem)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import StreamprocError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
IMAGE_CUE_S = 1.0  # an image's cue in SRT/WebVTT: shown for one second
IMAGE_PROMPT = "Describe this image in one or two sentences."  # when prompt.user is the video default


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def caption_images(config, backend, paths: Sequence[Path], out_dir: Path, formats: Sequence[str],
                   on_file: Optional[Callable] = None, *, force: bool = False, sinks: Sequence = (),
                   store_key: Optional[str] = None) -> list:
    """`sinks`: started by the caller (the caption store); `store_key` names it in the manifest."""
    from ..backends.base import GenerationParams
    from ..config.model import DEFAULT_USER_PROMPT
    from .captioner import FileOutcome, stems_for
    from .manifest import Manifest

    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out_dir)  # after the videos: it holds their entries too
    params = GenerationParams.from_config(config.generation)
    prompt = IMAGE_PROMPT if config.prompt.user == DEFAULT_USER_PROMPT else config.prompt.user
    outcomes = []
    for path, stem in stems_for(paths).items():
        started = time.perf_counter()
        stored = not sinks or store_key in manifest.stores(path)
        if not force and stored and manifest.is_done(path, stem, formats):
            outcome = FileOutcome(path, "skipped")
        else:
            outcome = _caption_one(config, backend, path, stem, out_dir, formats, prompt, params, sinks)
            if outcome.status == "done":
                manifest.record(path, stem, formats, segments=1, image=True,
                                stores=[store_key] if store_key and sinks else [])
        outcome.seconds = time.perf_counter() - started
        outcomes.append(outcome)
        if on_file:
            on_file(outcome)
    return outcomes


def _caption_one(config, backend, path: Path, stem: str, out_dir: Path, formats: Sequence[str], prompt: str,
                 params, sinks: Sequence):
    from ..pipeline.describer import describe_images
    from .captioner import FileOutcome
    from ..sinks.captions import srt_cue, vtt_cue, wrap_cues
    from ..media.still import load_image

    outcome = FileOutcome(path, "done")
    try:
        image = load_image(path)
        result = describe_images(backend, [image], prompt, system=config.prompt.system, params=params)
        record = {
            "type": "caption", "source": stem, "image": str(path), "size": [int(image.shape[1]), int(image.shape[0])],
            "text": result.text, "model": result.model, "prompt": prompt,
            "prompt_tokens": result.prompt_tokens, "visual_tokens": result.visual_tokens,
            "generated_tokens": result.generated_tokens,
        }
        cues = wrap_cues(result.text, 0.0, IMAGE_CUE_S)
        writers = {
            "jsonl": lambda: json.dumps(record, ensure_ascii=False) + "\n",
            "srt": lambda: "".join(srt_cue(i + 1, a, b, t) for i, (a, b, t) in enumerate(cues)),
            "vtt": lambda: "WEBVTT\n\n" + "".join(vtt_cue(i + 1, a, b, t) for i, (a, b, t) in enumerate(cues)),
        }
        for fmt in formats:
            (out_dir / f"{stem}.{fmt}").write_text(writers[fmt](), encoding="utf-8")
        if sinks:
            event = image_caption_event(stem, image, result, prompt)
            for sink in sinks:
                sink.handle(event)
        outcome.segments = 1
        outcome.described = 1
        outcome.model_s = result.timings.total_s
    except StreamprocError as error:
        outcome.status, outcome.error = "failed", str(error)
    return outcome


def image_caption_event(stem: str, image, result, prompt: str):
    """An image's caption as an event (for the caption store): a one-frame segment of IMAGE_CUE_S
    at media time 0, decoded now."""
    from ..events import caption_event
    from ..frames import Frame, Segment

    frame = Frame(stem, 0, 0.0, 0.0, time.time(), image)
    return caption_event(Segment(stem, 0, (frame,), 0.0, IMAGE_CUE_S, 1.0, last=True), result, prompt=prompt)
