"""`lens generate`: prompt in, PNGs out; with --image [--mask], image-to-image or inpainting."""

from __future__ import annotations

import argparse
import re

from lens.cli.options import check_guidance, check_output_folder, make_output_folder
from lens.cli.reasoner_options import REASONER_CHOICES, REASONER_HELP, add_api_options, reasoner_from_args
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
    p.add_argument("--image", help="start from this image (image-to-image; its size unless --height/--width)")
    p.add_argument("--mask", help="with --image: repaint only the white part of this mask (inpainting)")
    p.add_argument(
        "--strength",
        type=float,
        help="with --image: how much is redrawn, 0 < S <= 1 (default 0.6; 1.0 with --mask)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=1, help="images to generate")
    p.add_argument("--out", default="outputs", help="output folder")
    p.add_argument("--device", help="cuda, cpu, ... (default: cuda if available)")
    p.add_argument("--cpu-offload", action="store_true", help="keep only the running component on the GPU")
    p.add_argument("--lora", help="LoRA adapter: a folder, its .safetensors file, or a hub id")
    p.add_argument("--lora-scale", type=float, help="LoRA strength (default 1.0; 0 = the base model)")
    p.add_argument(
        "--reasoner",
        choices=REASONER_CHOICES,
        default="auto",
        help=REASONER_HELP,
    )
    add_api_options(p)
    p.set_defaults(func=run)


def _slug(prompt: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48] or "image"


def _use_nano_reasoner(args: argparse.Namespace) -> bool:
    return args.reasoner == "nano" or (args.reasoner == "auto" and args.model is None)


def nano_rewrite(prompt: str, seed: int, object_scale: float = 1.0) -> str:
    """The nano reasoner's dense caption of a GenEval-style prompt (the seed picks the scene it
    invents, laid out at the model's `object_scale`); a clear error for anything else."""
    from lens.world.reasoner import rewrite_prompt

    try:
        return rewrite_prompt(prompt, seed, object_scale=object_scale)
    except LensError as err:
        raise LensError(f"{err}; or pass --reasoner none to give the model the prompt as it is") from None


def edit_inputs(args: argparse.Namespace) -> dict:
    """image / mask_image / strength for the image-to-image or inpainting pipeline ({} without
    --image), every file and size checked before the model loads."""
    if args.image is None:
        for flag in ("--mask", "--strength"):
            if getattr(args, flag[2:]) is not None:
                raise LensError(f"{flag} needs --image (the picture to start from)")
        return {}
    if args.aspect:
        raise LensError(
            "--aspect does not go with --image: the image gives the size (--height/--width resize it)"
        )
    if (args.height is None) != (args.width is None):
        raise LensError(
            "with --image pass both --height and --width (the image is resized to them), or neither"
        )
    from lens import image_inputs as check
    from lens.resolution import MAX_AREA, validate_size

    image = check.open_image(args.image, "--image")
    mask = None if args.mask is None else check.open_image(args.mask, "--mask")
    if mask is not None:
        check.check_mask_size(image, mask, "pass a --mask of the image's size")
    if args.height is None:
        fix = "or pass --height and --width to resize it"
        check.check_image_size(image.height, image.width, MAX_AREA, fix, what=f"--image {args.image}")
    else:
        validate_size(args.height, args.width)
    strength = args.strength
    if strength is None:
        strength = check.IMG2IMG_STRENGTH if mask is None else check.INPAINT_STRENGTH
    inputs = dict(image=image.convert("RGB"), strength=check.check_strength(strength, "--strength"))
    return inputs if mask is None else inputs | dict(mask_image=mask)


def edit_pipeline(pipe, inputs: dict):
    """The image-to-image or inpainting pipeline over `pipe`'s very modules (`pipe` without --image)."""
    if not inputs:
        return pipe
    from lens.img2img import LensImg2ImgPipeline
    from lens.inpaint import LensInpaintPipeline

    return (LensInpaintPipeline if "mask_image" in inputs else LensImg2ImgPipeline).from_pipe(pipe)


def run(args: argparse.Namespace) -> int:
    if args.width is not None and args.height is None:
        raise LensError("--width needs --height")
    if args.n < 1:
        raise LensError(f"--n must be at least 1, got {args.n}")
    if not args.prompt.strip():
        raise LensError("the prompt is empty; describe the image to generate")
    check_guidance("--cfg", args.cfg)
    out = check_output_folder("--out", args.out)
    reasoner = reasoner_from_args(args)  # api / local: checked now, run by the pipeline
    edit = edit_inputs(args)
    text = args.prompt
    if _use_nano_reasoner(args):
        from lens.inference import world_object_scale

        text = nano_rewrite(args.prompt, args.seed, world_object_scale(args.model))
    if text != args.prompt:
        print(f"caption (nano reasoner): {text}")
    import torch
    from PIL.PngImagePlugin import PngInfo

    from lens.inference import load_pipeline
    from lens.lora import check_lora_options, use_lora

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    lora = check_lora_options(args.lora, args.lora_scale)  # before the (large) pipeline loads
    pipe = load_pipeline(args.model, device=device, cpu_offload=args.cpu_offload)
    if lora is not None:
        use_lora(pipe, lora, args.lora_scale)
    pipe = edit_pipeline(pipe, edit)
    if reasoner is not None:
        pipe.enable_reasoner(reasoner)
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
        **edit,
    ).images
    if reasoner is not None and pipe.rewritten_prompts[0] != text:
        text = pipe.rewritten_prompts[0]
        print(f"caption ({reasoner.source} reasoner): {text}")
    make_output_folder("--out", out)
    info = PngInfo()
    info.add_text("prompt", args.prompt)
    if text != args.prompt:
        info.add_text("caption", text)
    info.add_text(
        "lens", f"model={args.model or 'bundled'} seed={args.seed} steps={args.steps} cfg={args.cfg}"
    )
    if edit:  # what it was drawn from
        for key, value in (("image", args.image), ("mask", args.mask), ("strength", edit["strength"])):
            if value is not None:
                info.add_text(key, str(value))
    for k, image in enumerate(images):
        path = out / f"{_slug(args.prompt)}-s{args.seed}-{k}.png"
        image.save(path, pnginfo=info)
        print(path)
    return 0
