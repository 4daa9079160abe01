"""`streamproc chat`: talk to a Qwen2.5-VL or Qwen3-VL bmodel (or a transformers checkpoint) about
an image or a video, like the seed's demo: interactive, `clear` starts over, -p answers once."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UsageError

EPILOG = """\
examples:
  streamproc chat --bmodel qwen2.5-vl-3b.bmodel --tokenizer qwen2.5-vl-3b/ --image photo.jpg
  streamproc chat -m qwen2.5-vl-3b.bmodel -c config --image photo.jpg     # the seed demo's form
  streamproc chat --bmodel qwen2.5-vl-3b.bmodel --tokenizer qwen2.5-vl-3b/ --video clip.mp4 -p "What happens?"
  streamproc chat --model Qwen/Qwen2.5-VL-3B-Instruct --image a.jpg --image b.jpg --no-system
  streamproc chat --bmodel qwen3-vl-4b.bmodel --tokenizer Qwen3-VL-4B-Instruct/ --video clip.mp4

Images are resized to what the model takes: a bmodel's own max_pixels (its ViT size), a
checkpoint's preprocessor_config.json. The system turn is what the model's chat template adds
by itself unless --system or --no-system says otherwise.
In the interactive mode: `clear` (or `new`) forgets the conversation (the media stays), `exit`,
`quit`, `q` or Ctrl-D ends.
"""


def add_parser(subparsers) -> None:
    from .common import HelpFormatter

    parser = subparsers.add_parser(
        "chat",
        help="ask a model about an image or a video, interactively or once (-p)",
        description="Ask Qwen2.5-VL or Qwen3-VL about images or a video: a bmodel on a Sophgo TPU (or the CPU "
        "simulator), or a transformers checkpoint. Accepts the seed demo's -m BMODEL -c CONFIG_DIR form.",
        formatter_class=HelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("--bmodel", "-m", "--model_path", dest="bmodel", type=Path,
                        help="Qwen2.5-VL or Qwen3-VL bmodel (TPU or simulator)")
    parser.add_argument("--tokenizer", "-c", "--config_path", dest="tokenizer", type=Path,
                        help="folder with the model's tokenizer.json and processor configs "
                        "(default: beside the bmodel, or ./config)")
    parser.add_argument("--runtime-dir", type=Path, help="folder with libbmrt.so (default: $STREAMPROC_BMRT_DIR, the SDK)")
    parser.add_argument("--device-id", "-d", "--devid", dest="device_id", type=int, default=0,
                        help="TPU device (0..count-1 of the devices the runtime sees)")
    parser.add_argument("--model", help="transformers checkpoint folder or hub id instead of a bmodel (needs streamproc[hf])")
    parser.add_argument("--image", type=Path, action="append", default=[], help="an image (repeat for several)")
    parser.add_argument("--video", type=Path, help="a video, sampled at --fps")
    parser.add_argument("--fps", type=float, default=1.0, help="video sampling rate in frames per second")
    parser.add_argument("-p", "--prompt", help="ask this once, print the answer and exit")
    system = parser.add_mutually_exclusive_group()
    system.add_argument("--system", metavar="TEXT", help="the system turn (default: what the chat template adds)")
    system.add_argument("--no-system", action="store_true", help="no system turn, even if the template would add one")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest answer in tokens")
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (with --sample)")
    parser.add_argument("--top-p", type=float, default=0.8, help="nucleus sampling mass (with --sample)")
    parser.add_argument("--top-k", type=int, default=50, help="sample among this many tokens (with --sample)")
    parser.add_argument("--seed", type=int, help="random seed for --sample (default: random)")
    parser.set_defaults(func=run)


def tokenizer_beside(bmodel: Path) -> Path:
    """The tokenizer folder of a bmodel given without one: beside it, in a folder named like it,
    or ./config (where the seed demo keeps it)."""
    bmodel = Path(bmodel).expanduser()
    candidates = [bmodel.parent, bmodel.with_suffix(""), bmodel.parent / "config", Path("config")]
    found = next((d for d in candidates if (d / "tokenizer.json").is_file()), None)
    if found is None:
        raise UsageError(
            f"no tokenizer.json beside {bmodel} or in ./config: give the model's tokenizer folder "
            f"with --tokenizer DIR (or -c DIR)"
        )
    return found


def chat_config(args):
    """The chat's settings as a config, fitted to the model before any weight loads."""
    from ..backends.geometry import fit_to_model
    from ..config import config_from_data

    if bool(args.bmodel) == bool(args.model):
        raise UsageError("give --bmodel FILE (TPU; -m FILE) or --model DIR_OR_HUB_ID (transformers)")
    if args.model:
        backend = {"type": "hf", "model": args.model}
        area = 0.25  # video frames at a quarter of max_pixels, as the service samples them
    else:
        tokenizer = args.tokenizer or tokenizer_beside(args.bmodel)
        backend = {"type": "tpu", "bmodel": str(args.bmodel), "tokenizer": str(tokenizer), "device_id": args.device_id}
        if args.runtime_dir:
            backend["runtime_dir"] = str(args.runtime_dir)
        area = 1.0  # one ViT call's worth a frame pair: the bmodel's max_pixels
    system = False if args.no_system else args.system
    data = {
        "backend": backend,
        "sampling": {"fps": args.fps, "video_area_factor": area},
        "generation": {"max_new_tokens": args.max_new_tokens},
        "prompt": {} if system is None else {"system": system},
    }
    config, _ = fit_to_model(config_from_data(data))
    return config


def _backend(config):
    from ..backends.base import create_backend
    from .common import quiet_simulator_if_used

    quiet_simulator_if_used(config)
    return create_backend(config.backend)


def load_video(path: Path, sampling, builder, seq_length):
    """Frames sized by the fitted `sampling` (the model's own limits), as many as fit."""
    from ..config.ingest import SourceConfig
    from ..ingest.sampling import tokens_per_frame_pair
    from ..ingest.sources import VideoSource

    frames = [f.image for f in VideoSource(SourceConfig(name="chat", path=path), sampling).frames()]
    if seq_length and frames:
        per_pair = tokens_per_frame_pair(*frames[0].shape[:2], sampling.token_pixels) + builder.pair_text_tokens
        fit = 2 * max(1, (seq_length - 128) // 2 // per_pair)
        if len(frames) > fit:
            print(f"(using the first {fit} of {len(frames)} frames: that is what fits {seq_length} tokens)", file=sys.stderr)
            frames = frames[:fit]
    return frames


def run(args) -> int:
    from ..backends.base import GenerationParams

    config = chat_config(args)  # before any weight loads: a value that does not fit fails now
    from ..media.still import load_image

    images = [load_image(p) for p in args.image]
    backend = _backend(config)
    try:
        builder = backend.inputs
        video = None
        if args.video:
            video = load_video(args.video, config.sampling, builder, backend.capabilities.seq_length)
        params = GenerationParams(
            max_new_tokens=args.max_new_tokens, do_sample=args.sample, temperature=args.temperature,
            top_p=args.top_p, top_k=args.top_k, seed=args.seed,
        )
        session = ChatSession(backend, builder, images, video, args.fps, params, system=config.prompt.system)
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
            if line in ("exit", "quit", "q"):
                return 0
            if line in ("clear", "new"):
                session.clear()
                print("(history cleared)")
            elif line:
                session.ask(line)
    finally:
        backend.close()


class ChatSession:
    def __init__(self, backend, builder, images, video, fps, params, system=None):
        self.backend, self.builder = backend, builder
        self.images, self.video, self.fps, self.params = images, video, fps, params
        self.system = system  # None: the template's default; False: none; a string: that
        self.clear()

    def clear(self) -> None:
        self.previous = None
        self.answer_ids = ()

    def ask(self, question: str) -> None:
        printer = _StreamPrinter(self.builder) if self.backend.capabilities.streaming else None
        extra = {"on_token": printer.token} if printer else {}
        if printer:
            print("\nmodel> ", end="", flush=True)
        if self.previous is None:
            inputs = self.builder.build(question, video=self.video, images=self.images or None, fps=self.fps,
                                        system=self.system, answer_reserve=8)
            result = self.backend.describe(inputs, self.params, **extra)
        else:
            inputs = self.builder.follow_up(self.previous, self.answer_ids, question, answer_reserve=8)
            result = self.backend.follow_up(inputs, self.params, **extra)
        self.previous, self.answer_ids = inputs, result.token_ids
        t = result.timings
        if printer:
            printer.finish(result.text)
        else:
            print(f"\nmodel> {result.text}")
        print(
            f"[first token {t.first_token_s:.2f} s (ViT {t.vision_s:.2f} s), {result.generated_tokens} tokens "
            f"at {result.tokens_per_s:.1f} tokens/s, {result.prompt_tokens} prompt tokens, "
            f"{result.visual_tokens} visual tokens]",
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
