"""`streamproc chat`: talk to a Qwen2.5-VL bmodel (or a transformers checkpoint) about an image
or a video, like the seed's demo: interactive, `clear` starts over, -p answers once."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UsageError

EPILOG = """\
examples:
  streamproc chat --bmodel qwen2.5-vl-3b.bmodel --tokenizer qwen2.5-vl-3b/ --image photo.jpg
  streamproc chat --bmodel qwen2.5-vl-3b.bmodel --tokenizer qwen2.5-vl-3b/ --video clip.mp4 -p "What happens?"
  streamproc chat --model Qwen/Qwen2.5-VL-3B-Instruct --image a.jpg --image b.jpg

In the interactive mode: `clear` forgets the conversation (the media stays), `exit` or Ctrl-D ends.
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="ask a model about an image or a video, interactively or once (-p)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("--bmodel", type=Path, help="Qwen2.5-VL bmodel (TPU or simulator)")
    parser.add_argument("--tokenizer", type=Path, help="folder with the model's tokenizer.json (default: beside the bmodel)")
    parser.add_argument("--runtime-dir", type=Path, help="folder with libbmrt.so (default: $STREAMPROC_BMRT_DIR, SDK)")
    parser.add_argument("--device-id", type=int, default=0, help="TPU device (default 0)")
    parser.add_argument("--model", help="transformers checkpoint folder or hub id instead of a bmodel")
    parser.add_argument("--image", type=Path, action="append", default=[], help="an image (repeat for several)")
    parser.add_argument("--video", type=Path, help="a video, sampled at --fps")
    parser.add_argument("--fps", type=float, default=1.0, help="video sampling rate (default 1)")
    parser.add_argument("-p", "--prompt", help="ask this once, print the answer and exit")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--seed", type=int)
    parser.set_defaults(func=run)


def _backend(args):
    from ..config.model import HfBackendConfig, TpuBackendConfig

    if bool(args.bmodel) == bool(args.model):
        raise UsageError("give --bmodel FILE (TPU) or --model DIR_OR_HUB_ID (transformers)")
    if args.model:
        from ..backends.hf import HfBackend

        return HfBackend(HfBackendConfig(model=args.model))
    tokenizer = args.tokenizer
    if tokenizer is None:
        beside = [args.bmodel.parent, args.bmodel.with_suffix("")]
        tokenizer = next((d for d in beside if (d / "tokenizer.json").exists()), None)
        if tokenizer is None:
            raise UsageError("--tokenizer is needed: no tokenizer.json beside the bmodel")
    from ..backends.tpu import TpuBackend
    from .common import quiet_simulator

    config = TpuBackendConfig(
        bmodel=args.bmodel, tokenizer=tokenizer, runtime_dir=args.runtime_dir, device_id=args.device_id
    )
    quiet_simulator(config.runtime_dir)
    return TpuBackend(config)


def load_image(path: Path):
    import av

    from ..errors import MediaError

    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, OSError, StopIteration) as error:
        raise MediaError(f"{path}: not a readable image ({getattr(error, 'strerror', None) or error})") from None


def load_video(path: Path, fps: float, builder, seq_length, max_patches):
    """Frames at 1/4 of the model's max pixels (the product's video size), as many as fit."""
    from ..config.ingest import SamplingConfig, SourceConfig
    from ..ingest.sampling import tokens_per_frame_pair
    from ..ingest.sources import VideoSource

    max_pixels = builder.vision.video_max_pixels
    if max_patches:
        max_pixels = min(max_pixels, max_patches * 196)
    sampling = SamplingConfig(fps=fps, max_pixels=max_pixels, video_area_factor=1.0 if max_patches else 0.25,
                              min_pixels=min(max_pixels, 4 * 28 * 28))
    frames = [f.image for f in VideoSource(SourceConfig(name="chat", path=path), sampling).frames()]
    if seq_length and frames:
        per_pair = tokens_per_frame_pair(*frames[0].shape[:2])
        fit = 2 * max(1, (seq_length - 128) // 2 // per_pair)
        if len(frames) > fit:
            print(f"(using the first {fit} of {len(frames)} frames: that is what fits {seq_length} tokens)", file=sys.stderr)
            frames = frames[:fit]
    return frames


def run(args) -> int:
    from ..backends.base import GenerationParams

    backend = _backend(args)
    try:
        builder = backend.inputs
        images = [load_image(p) for p in args.image]
        video = None
        if args.video:
            video = load_video(args.video, args.fps, builder, getattr(backend, "seq_length", None),
                               getattr(backend, "max_patches", None))
        params = GenerationParams(
            max_new_tokens=args.max_new_tokens, do_sample=args.sample, temperature=args.temperature,
            top_p=args.top_p, top_k=args.top_k, seed=args.seed,
        )
        session = ChatSession(backend, builder, images, video, args.fps, params)
        if args.prompt:
            session.ask(args.prompt)
            return 0
        print(f"model {backend.model_id}; media: {len(images)} image(s){', a video' if video else ''}. "
              "Type a question; 'clear' starts over, 'exit' ends.")
        while True:
            try:
                line = input("\nyou> ").strip()
            except EOFError:
                print()
                return 0
            if line in ("exit", "quit"):
                return 0
            if line == "clear":
                session.clear()
                print("(history cleared)")
            elif line:
                session.ask(line)
    finally:
        backend.close()


class ChatSession:
    def __init__(self, backend, builder, images, video, fps, params):
        self.backend, self.builder = backend, builder
        self.images, self.video, self.fps, self.params = images, video, fps, params
        self.clear()

    def clear(self) -> None:
        self.previous = None
        self.answer_ids = ()

    def ask(self, question: str) -> None:
        streaming = self.backend.name == "tpu"  # the engine hands out tokens as they come
        printer = _StreamPrinter(self.builder) if streaming else None
        extra = {"on_token": printer.token} if printer else {}
        if printer:
            print("\nmodel> ", end="", flush=True)
        if self.previous is None:
            inputs = self.builder.build(question, video=self.video, images=self.images or None, fps=self.fps,
                                        answer_reserve=8)
            result = self.backend.describe(inputs, self.params, **extra)
        else:
            inputs = self.builder.follow_up(self.previous, self.answer_ids, question, answer_reserve=8)
            follow_up = getattr(self.backend, "follow_up", self.backend.describe)
            result = follow_up(inputs, self.params, **extra)
        self.previous, self.answer_ids = inputs, result.token_ids
        t = result.timings
        if printer:
            printer.finish(result.text)
        else:
            print(f"\nmodel> {result.text}")
        print(
            f"[first token {t.first_token_s:.2f} s (ViT {t.vision_s:.2f} s), {result.generated_tokens} tokens "
            f"at {result.tokens_per_s:.1f} tokens/s, {result.prompt_tokens} prompt tokens]",
            file=sys.stderr,
        )


class _StreamPrinter:
    """Prints the answer as tokens arrive. Text is decoded from all tokens so far, and a
    trailing half-decoded character waits for the token that completes it."""

    def __init__(self, builder):
        self.builder = builder
        self.tokens: list[int] = []
        self.shown = ""

    def token(self, token: int) -> None:
        if token in self.builder.stop_ids:
            return
        self.tokens.append(token)
        text = self.builder.decode(self.tokens).lstrip()
        ready = text.rstrip("\ufffd")
        if ready.startswith(self.shown) and len(ready) > len(self.shown):
            print(ready[len(self.shown):], end="", flush=True)
            self.shown = ready

    def finish(self, text: str) -> None:
        rest = text[len(self.shown):] if text.startswith(self.shown) else ""
        print(rest)
