"""`streamproc convert CHECKPOINT --chip CHIP --out DIR`: a bmodel sized for the cameras."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UsageError

EXAMPLES = """examples:
  streamproc convert Qwen2.5-VL-3B-Instruct --chip bm1684x --out models/   # 20 s segments, 672x896, w4bf16
  streamproc convert ckpt/ --chip bm1688 --out models/ --segment-seconds 80 --history
  streamproc convert ckpt/ --chip bm1684x --out models/ --config configs/camera.yaml  # its prompt and rules
"""


def add_parser(subparsers) -> None:
    from .common import HelpFormatter

    parser = subparsers.add_parser(
        "convert",
        help="convert a Qwen2.5-VL checkpoint into a bmodel sized for your segments",
        formatter_class=HelpFormatter,
        description=(
            "Sizes the bmodel from the segments you want (the service's own planner: frames, prompt, rule "
            "questions and answer reserve), prints the plan, sets up TPU-MLIR once in a cached Python 3.10 "
            "environment (~/.cache/streamproc/converter, ~7 GB), runs its llm_convert.py, checks that the bmodel "
            "answers on the CPU simulator (if `streamproc runtime` installed it) and prints the config lines "
            "that use it."
        ),
        epilog=EXAMPLES,
    )
    parser.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="Qwen2.5-VL checkpoint folder (config.json, *.safetensors)")
    parser.add_argument("--chip", choices=["bm1684x", "bm1688"], required=True, help="the TPU the bmodel runs on")
    parser.add_argument("--out", type=Path, required=True, help="folder for the bmodel (not inside CHECKPOINT)")
    parser.add_argument("--segment-seconds", type=float, default=20.0, help="segment length to fit (default 20)")
    parser.add_argument("--max-pixels", default="672x896", help="largest image HEIGHTxWIDTH the ViT takes (default 672x896)")
    parser.add_argument("--history", action="store_true", help="keep the KV cache between turns (rule questions follow the caption)")
    parser.add_argument("--old-layout", action="store_true",
                        help="with --history: the older 5-input layout, built by tpu_mlir 1.21 (its own venv)")
    parser.add_argument("--dynamic", action="store_true", help="dynamic prefill and ViT (faster on short inputs)")
    parser.add_argument("--dynamic-vit", action="store_true", help="pass --dynamic_vit to the converter")
    parser.add_argument("--quantize", choices=["w4bf16", "w4f16", "bf16", "f16"], default="w4bf16",
                        help="weight format (default w4bf16; BM1688 and BM1684X both run bf16)")
    parser.add_argument("--do-sample", action="store_true", help="add the sampling head (temperature, top-p)")
    parser.add_argument("--config", type=Path, help="size the prompt reserve from this config's prompts and rules")
    parser.add_argument("--seq-length", type=int, help="override the planned sequence length")
    parser.add_argument("--input-length", type=int, help="override the planned history chunk / input length")
    parser.add_argument("--name", help="bmodel file name without .bmodel (default: from the options)")
    parser.add_argument("--strip-kernel", action="store_true",
                        help="remove the embedded kernel module (smaller; runtimes bring their own)")
    parser.add_argument("--no-check", action="store_true", help="skip the check on the simulator")
    parser.set_defaults(func=run)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def reserves(checkpoint: Path, config_path) -> tuple[int, int, float, float]:
    """(prompt reserve, answer reserve, fps, video_area_factor) as the service will plan them."""
    from ..config import config_from_data, load_config
    from ..qwen import InputBuilder
    from ..rules.alerts import RuleEngine
    from ..pipeline.planning import prompt_reserve

    if config_path:
        config = load_config(config_path)
    else:
        config = config_from_data({"sources": [{"name": "camera", "path": "camera.mp4"}]})
    floor = config.segmenting.prompt_reserve
    if (checkpoint / "tokenizer.json").is_file() or (checkpoint / "tokenizer_config.json").is_file():
        builder = InputBuilder.from_pretrained(checkpoint)
        rules = RuleEngine(config.rules)
        reserve = max(prompt_reserve(config, builder, rules, source.name) for source in config.sources)
    else:
        reserve = floor
    return reserve, config.segmenting.answer_reserve, config.sampling.fps, config.sampling.video_area_factor


def run(args) -> int:
    from ..convert.env import ensure_converter
    from ..convert.plan import parse_size, plan_conversion
    from ..convert.run import BuildOptions, check_checkpoint, check_on_simulator, convert

    if args.old_layout and not args.history:
        raise UsageError("--old-layout is a history layout: give --history too")
    checkpoint = args.checkpoint.expanduser()
    check_checkpoint(checkpoint)
    prompt, answer, fps, area = reserves(checkpoint, args.config)
    plan = plan_conversion(
        segment_s=args.segment_seconds, max_pixels=parse_size(args.max_pixels), prompt_reserve=prompt,
        answer_reserve=answer, fps=fps, video_area_factor=area, history=args.history,
        seq_length=args.seq_length, input_length=args.input_length,
    )
    options = BuildOptions(chip=args.chip, quantize=args.quantize, dynamic=args.dynamic, dynamic_vit=args.dynamic_vit,
                           history=args.history, old_layout=args.old_layout, do_sample=args.do_sample,
                           strip_kernel=args.strip_kernel)
    print("plan:\n  " + plan.describe().replace("\n", "\n  "), flush=True)
    env = ensure_converter(old_layout=args.old_layout, progress=progress)
    bmodel = convert(checkpoint, args.out.expanduser(), plan, options, env, name=args.name, progress=progress)
    print(f"wrote {bmodel} ({bmodel.stat().st_size / 2**20:.1f} MiB)", flush=True)
    if not args.no_check:
        check = check_on_simulator(bmodel, checkpoint, args.chip)
        if check is None:
            print("not checked: no simulator runtime (run `streamproc runtime` to check bmodels on the CPU)")
        else:
            print(f"checked on the simulator: {check['layout']} layout, seq {check['seq_length']}, answered {check['tokens']}")
    h, w = plan.max_pixels
    print(
        "config lines:\n"
        "backend:\n  type: tpu\n"
        f"  bmodel: {bmodel}\n  tokenizer: {checkpoint.resolve()}\n"
        f"sampling:\n  max_pixels: {h}x{w}\n  fps: {fps:g}\n"
        f"segmenting:\n  max_duration_s: {args.segment_seconds:g}"
    )
    return 0
