"""`lens world`: the synthetic shapes world (shards for training, single samples, the nano reasoner)."""

from __future__ import annotations

import argparse

STYLES = ("compact", "verbose")  # lens.world.captions.CAPTION_STYLES, not imported so --help stays fast


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "world", help="synthetic shapes world: write shards, preview samples, rewrite prompts"
    )
    sub = p.add_subparsers(dest="world_command", required=True, metavar="ACTION")

    g = sub.add_parser("generate", help="write WebDataset shards (png, caption.txt, brief.txt, json)")
    g.add_argument("--out", required=True, help="output folder for world-000000.tar, ...")
    g.add_argument("--n", type=int, required=True, help="number of samples")
    g.add_argument(
        "--size",
        default="64x64",
        help="HEIGHTxWIDTH, multiples of 16 (default 64x64); a comma list is cycled per sample, "
        "e.g. 128x128,128x128,96x160 for a 2:1 mix",
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--start", type=int, default=0, help="index of the first sample (split a set over jobs)")
    g.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    g.add_argument(
        "--geneval-fraction",
        type=float,
        default=0.5,
        help="share of scenes drawn for GenEval-category prompts",
    )
    g.add_argument(
        "--objects",
        type=int,
        help="every scene holds exactly N objects (a curriculum stage; default: the training mixture)",
    )
    g.add_argument(
        "--object-scale",
        type=float,
        default=1.0,
        help="multiply every object's size (0.5..2; default 1): larger shapes span more latent tokens",
    )
    _caption_style(g, "caption.txt's dense caption")
    g.set_defaults(func=_generate)

    s = sub.add_parser("sample", help="render one scene and print its captions (every style) and scene graph")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", default="64x64", help="HEIGHTxWIDTH, multiples of 16")
    s.add_argument("--out", help="save the image here (PNG)")
    s.set_defaults(func=_sample)

    r = sub.add_parser("reason", help="rewrite a short GenEval-style prompt into a dense caption")
    r.add_argument("prompt", help="e.g. 'a photo of two red circles'")
    r.add_argument("--seed", type=int, default=None, help="default: derived from the prompt")
    _caption_style(r, "the rewrite (use the style the model trained on)")
    r.add_argument(
        "--object-scale",
        type=float,
        default=1.0,
        help="lay the scene out for objects of this scale (the model's world_object_scale)",
    )
    r.set_defaults(func=_reason)


def _caption_style(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--caption-style",
        choices=STYLES,
        default="compact",
        help=f"style of {what}: compact (<= ~40 words, the default) or verbose (a ~130-word paragraph)",
    )


def _generate(args: argparse.Namespace) -> int:
    from lens.resolution import parse_size
    from lens.world.shards import write_shards

    sizes = [parse_size(s, "--size") for s in args.size.split(",")]
    paths = write_shards(
        args.out, args.n, seed=args.seed, shard_size=args.shard_size,
        geneval_fraction=args.geneval_fraction, sizes=sizes, start=args.start, objects=args.objects,
        caption_style=args.caption_style, object_scale=args.object_scale,
    )  # fmt: skip
    shown = ", ".join(sorted({f"{h}x{w}" for h, w in sizes}))
    print(f"wrote {args.n} samples at {shown} to {len(paths)} shard(s) in {args.out}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from lens.resolution import parse_size
    from lens.world.captions import CAPTION_STYLES, brief_caption, dense_caption
    from lens.world.render import render_scene
    from lens.world.sampler import sample_scene

    h, w = parse_size(args.size, "--size")
    scene = sample_scene(args.seed)
    if args.out:
        render_scene(scene, h, w).save(args.out)
        print(f"image: {args.out}")
    print(f"brief: {brief_caption(scene)}")
    for style in CAPTION_STYLES:
        print(f"dense ({style}): {dense_caption(scene, style=style)}")
    print(f"scene: {scene.to_json()}")
    return 0


def _reason(args: argparse.Namespace) -> int:
    from lens.world.reasoner import rewrite_prompt
    from lens.world.sampler import check_object_scale

    scale = check_object_scale(args.object_scale)
    print(rewrite_prompt(args.prompt, args.seed, args.caption_style, scale))
    return 0
