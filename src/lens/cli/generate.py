"""`lens generate`: prompt in, PNGs out."""

from __future__ import annotations

import argparse
import re

from lens.cli.options import check_guidance, check_output_folder, make_output_folder
from lens.errors import LensError


def register(sub) -> None:
    p = sub.add_parser(
        "generate", help="generate images from a prompt", description="Generate images from a prompt."
    )
    p.add_argument("prompt", help="what to draw")
    p.add_argument("--model", help="pipeline folder (diffusers layout) or hub id, e.g. microsoft/Lens")
    p.add_argument("--steps", type=int, help="Euler steps (default: the model's)")
    p.add_argument("--cfg", type=float, help="guidance scale; <= 1 disables CFG (default: the model's)")
    p.add_argument("--negative", help="negative prompt (default: the null condition)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--aspect", help="released preset W:H, e.g. 1:1, 3:4, 16:9")
    size.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument(
        "--resolution", type=int, default=1024, choices=(1024, 1440), help="preset base for --aspect"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=1, help="images to generate")
    p.add_argument("--out", default="outputs", help="output folder")
    p.add_argument("--device", help="cuda, cpu, ... (default: cuda if available)")
    p.add_argument("--cpu-offload", action="store_true", help="keep only the running component on the GPU")
    p.add_argument(
        "--reasoner",
        choices=("auto", "nano", "none"),
        default="auto",
        help="rewrite the prompt first: nano = the shapes world's rule-based reasoner (what Lens-Nano was "
        "trained to read); auto (default) = nano for the bundled model, none otherwise",
    )
    p.set_defaults(func=run)


def _slug(prompt: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48] or "image"


def _use_nano_reasoner(args: argparse.Namespace) -> bool:
    return args.reasoner == "nano" or (args.reasoner == "auto" and args.model is None)


def nano_rewrite(prompt: str, seed: int) -> str:
    """The nano reasoner's dense caption of a GenEval-style prompt (the seed picks the scene it
    invents); a clear error for anything else."""
    from lens.world.reasoner import rewrite_prompt

    try:
        return rewrite_prompt(prompt, seed)
    except LensError as err:
        raise LensError(f"{err}; or pass --reasoner none to give the model the prompt as it is") from None


def run(args: argparse.Namespace) -> int:
    if args.width is not None and args.height is None:
        raise LensError("--width needs --height")
    if args.n < 1:
        raise LensError(f"--n must be at least 1, got {args.n}")
    if not args.prompt.strip():
        raise LensError("the prompt is empty; describe the image to generate")
    check_guidance("--cfg", args.cfg)
    out = check_output_folder("--out", args.out)
    text = nano_rewrite(args.prompt, args.seed) if _use_nano_reasoner(args) else args.prompt
    if text != args.prompt:
        print(f"caption (nano reasoner): {text}")
    import torch
    from PIL.PngImagePlugin import PngInfo

    from lens.inference import load_pipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = load_pipeline(args.model, device=device, cpu_offload=args.cpu_offload)
    size = (
        dict(aspect_ratio=args.aspect, resolution=args.resolution)
        if args.aspect
        else dict(height=args.height, width=args.width if args.height is not None else None)
    )
    generator = torch.Generator("cpu").manual_seed(args.seed)
    images = pipe(
        text,
        negative_prompt=args.negative,
        num_inference_steps=args.steps,
        guidance_scale=args.cfg,
        num_images_per_prompt=args.n,
        generator=generator,
        **size,
    ).images
    make_output_folder("--out", out)
    info = PngInfo()
    info.add_text("prompt", args.prompt)
    if text != args.prompt:
        info.add_text("caption", text)
    info.add_text(
        "lens", f"model={args.model or 'bundled'} seed={args.seed} steps={args.steps} cfg={args.cfg}"
    )
    for k, image in enumerate(images):
        path = out / f"{_slug(args.prompt)}-s{args.seed}-{k}.png"
        image.save(path, pnginfo=info)
        print(path)
    return 0
