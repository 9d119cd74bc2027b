"""`lens nano`: the Lens-Nano laptop model's parts.

`lens nano build-components OUT_DIR` trains the frozen components from nothing on the shapes world
(tokenizer, GPT-OSS-architecture LM, FLUX.2-class VAE) and writes them as `tokenizer/`,
`text_encoder/` and `vae/` plus `nano_components.json` (measurements and the denoiser settings).
`lens nano frozen COMPONENTS OUT` makes the pipeline folder without a denoiser that training's
`encoders.source` names (`lens.nano.bundle.frozen_folder`). `lens nano build OUT_DIR` goes on from
there: world shards, the denoiser, export and Nano-Eval (`lens.nano.recipe`).
"""

from __future__ import annotations

import argparse

from lens.cli.options import add_caption_style, add_overrides, check_guidance
from lens.errors import LensError
from lens.resolution import parse_size


def register(sub) -> None:
    p = sub.add_parser("nano", help="Lens-Nano: the laptop model, its components and experiments")
    nano = p.add_subparsers(dest="nano_command", required=True, metavar="NANO_COMMAND")
    b = nano.add_parser(
        "build-components",
        help="train tokenizer, text encoder and VAE on the shapes world and save them",
        description="Train the Lens-Nano tokenizer, LM and VAE from nothing; deterministic by seed and budget.",
    )
    b.add_argument("out_dir", help="output folder (gets tokenizer/, text_encoder/, vae/)")
    b.add_argument("--minutes-budget", type=float, default=20.0, help="CPU minutes to plan for (default 20)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument(
        "--native-size",
        type=int,
        default=128,
        choices=(64, 128),
        help="image side the latent statistics are fitted at (default 128)",
    )
    b.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: small ops scale badly)"
    )
    b.add_argument("--lm-steps", type=int, default=None, help="override the planned LM steps")
    b.add_argument("--vae-steps", type=int, default=None, help="override the planned VAE steps")
    b.set_defaults(func=run_build)

    f = nano.add_parser(
        "frozen",
        help="the frozen components as a pipeline folder without a denoiser (for encoders.source)",
        description="Copy a `lens nano build-components` folder's tokenizer/, text_encoder/ and vae/ into OUT "
        "and add scheduler/ and model_index.json: the released layout without transformer/, which training's "
        "encoders.source must name so that `lens export` can copy the frozen parts.",
    )
    f.add_argument("components", metavar="COMPONENTS", help="a `lens nano build-components` folder")
    f.add_argument("out", metavar="OUT", help="new output folder")
    f.add_argument(
        "--text-encoder",
        choices=("lm", "lookup"),
        default="lm",
        help="lm: the trained nano LM (default); lookup: the same class as a context-free word lookup "
        "(token embeddings, blocks zeroed), whose features a colour word decides ~86 %% of",
    )
    f.set_defaults(func=run_frozen)

    r = nano.add_parser(
        "build",
        help="the whole nano model: components, world shards, denoiser, export, Nano-Eval",
        description="Build Lens-Nano from nothing in resumable stages under OUT_DIR (see lens.nano.recipe). "
        "The defaults are the bundled model's recipe (OUT/pipeline is what src/lens/assets/lens-nano holds).",
    )
    r.add_argument("out_dir")
    r.add_argument("--components", help="reuse this `lens nano build-components` folder")
    r.add_argument("--component-minutes", type=float, default=20.0, help="budget of a components build")
    r.add_argument("--samples", type=int, default=8_000, help="world samples to train on (default 8000)")
    r.add_argument(
        "--object-scale", type=float, default=1.8, help="world objects' size, x the world's own (default 1.8)"
    )
    r.add_argument(
        "--text-encoder",
        choices=("lookup", "lm"),
        default="lookup",
        help="text features: a word lookup (default, the bundled model's) or the trained nano LM",
    )
    r.add_argument(
        "--sizes",
        nargs="+",
        default=["128x128"],
        metavar="HxW",
        help="world image sizes, cycled over the samples (repeat one to weight it, e.g. 128x128 128x128 "
        "96x160); the training buckets follow (default 128x128)",
    )
    r.add_argument("--jobs", type=int, default=0, help="processes writing the world (default: all cores)")
    add_overrides(r, "training config field, as for lens train")
    r.add_argument("--guidance", type=float, nargs="+", default=[2.0, 3.0], help="CFG sweep (default 2 3)")
    add_caption_style(r, "the world's dense captions (and the sweep's reasoner rewrites)")
    r.add_argument("--eval-samples", type=int, default=4, help="images per prompt in the sweep (default 4)")
    r.add_argument("--no-eval", action="store_true", help="stop after the export")
    r.set_defaults(func=run_recipe)

    e = nano.add_parser(
        "captions-experiment",
        help="dense vs brief vs mixed captions at equal compute, Nano-Eval over steps",
        description="Train one nano denoiser per caption policy (concurrent processes, same shards, steps and "
        "seed) and print Nano-Eval over steps, with short prompts and with the reasoner's dense rewrites.",
    )
    e.add_argument("out_dir")
    e.add_argument("--steps", type=int, default=2000)
    e.add_argument("--eval-every", type=int, default=500)
    e.add_argument("--policies", nargs="+", default=["dense", "brief", "mixed"])
    add_overrides(e, "training config field of every arm, e.g. data.shards=...")
    e.add_argument("--plot", help="also draw the curves to this PNG")
    e.add_argument("--sequential", action="store_true", help="train one arm at a time (a small CPU)")
    e.add_argument("--no-nano-eval", action="store_true", help="log only the val-loss hook while training")
    e.add_argument(
        "--loss-shards", help="held-out world shards: print each arm's loss with dense and brief prompts"
    )
    e.add_argument("--loss-samples", type=int, default=32, help="held-out samples for --loss-shards")
    e.set_defaults(func=run_captions)

    c = nano.add_parser(
        "concept-data",
        help="captioned world scenes with a new shape (a crescent), for lens finetune",
        description="Write N world scenes in which one object is a crescent, a shape the world lacks, as a "
        "world shard OUT/world-000000.tar (the world's grounded captions with 'crescent' for the shape).",
    )
    c.add_argument("out")
    c.add_argument("--n", type=int, default=48, help="images (default 48)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--size", type=int, default=128, help="side in pixels, a multiple of 16 (default 128)")
    c.set_defaults(func=run_concept_data)

    v = nano.add_parser(
        "concept-eval",
        help="does a model draw crescents: held-out crescent captions, read by Nano-Eval's analyser",
        description="Generate a held-out one-crescent scene's grounded caption (or, with --plain, 'a photo "
        "of a {colour} crescent') for every chromatic colour and --seeds seeds, and print the share of "
        "images whose main object reads as a crescent (among the world's shapes and the crescent) and as a "
        "crescent of the named colour.",
    )
    v.add_argument("--model", help="pipeline folder (default: the bundled Lens-Nano)")
    v.add_argument("--lora", help="a LoRA adapter on it (folder or .safetensors)")
    v.add_argument("--lora-scale", type=float, help="its strength (default 1.0)")
    v.add_argument("--seeds", type=int, default=2, help="images per colour (default 2)")
    v.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    v.add_argument("--guidance", type=float, help="CFG scale (default: the model's)")
    v.add_argument("--grid", help="also write the images to this PNG, one row per seed")
    v.add_argument(
        "--plain",
        action="store_true",
        help="prompt 'a photo of a {colour} crescent' instead of grounded captions",
    )
    v.set_defaults(func=run_concept_eval)


def run_build(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from lens.nano.build import build_components, plan_for_budget

    if args.threads < 1:
        raise LensError(f"--threads must be at least 1, got {args.threads}")
    for name in ("lm_steps", "vae_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise LensError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    torch.set_num_threads(args.threads)
    plan = plan_for_budget(args.minutes_budget, args.native_size)
    overrides = {k: getattr(args, k) for k in ("lm_steps", "vae_steps") if getattr(args, k) is not None}
    plan = dataclasses.replace(plan, **overrides)
    manifest = build_components(args.out_dir, seed=args.seed, plan=plan, minutes=args.minutes_budget)
    print(
        f"{args.out_dir}: LM held-out loss {manifest['text_encoder']['held_out_loss_after']:.3f}, "
        f"VAE PSNR 64px {manifest['vae']['psnr_64']} dB / 128px {manifest['vae']['psnr_128']} dB, "
        f"sizes {manifest['sizes_mb']} MB"
    )
    return 0


def run_frozen(args: argparse.Namespace) -> int:
    from lens.nano.bundle import frozen_folder

    out = frozen_folder(args.components, args.out, text_encoder=args.text_encoder)
    print(f"{out}: frozen components of {args.components}; train with --set encoders.source={out}")
    return 0


def run_recipe(args: argparse.Namespace) -> int:
    import logging

    from lens.eval.sweep import format_rows
    from lens.nano.recipe import Recipe, build

    if args.samples < 1 or args.eval_samples < 1:
        raise LensError("--samples and --eval-samples must be at least 1")
    check_guidance("--guidance", args.guidance)
    from lens.world.sampler import check_object_scale

    check_object_scale(args.object_scale)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    recipe = Recipe(
        components=args.components, component_minutes=args.component_minutes, samples=args.samples,
        jobs=args.jobs, overrides=args.overrides, guidances=tuple(args.guidance),
        eval_samples=args.eval_samples, evaluate=not args.no_eval, caption_style=args.caption_style,
        object_scale=args.object_scale, text_encoder=args.text_encoder,
        sizes=tuple(parse_size(t, "--sizes") for t in args.sizes),
    )  # fmt: skip
    result = build(args.out_dir, recipe)
    if result["rows"]:
        print(format_rows(result["rows"]))
        print(f"default CFG set to {result['guidance']:g} (best with the reasoner)")
    print(f"pipeline: {result['pipeline']} ({result['size_mb']:.1f} MB)")
    return 0


def run_captions(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from lens.research.captions import captions, format_loss_table, format_table, loss_table, plot

    policies = tuple(args.policies)
    rows = captions(
        args.out_dir,
        args.overrides,
        args.steps,
        args.eval_every,
        policies,
        args.sequential,
        not args.no_nano_eval,
    )
    Path(args.out_dir, "captions.json").write_text(json.dumps(rows, indent=2) + "\n")
    if rows:
        print(format_table(rows, policies))
    if args.loss_shards:
        losses = loss_table(args.out_dir, args.loss_shards, policies, args.loss_samples)
        Path(args.out_dir, "captions_loss.json").write_text(json.dumps(losses, indent=2) + "\n")
        print(format_loss_table(losses))
    if args.plot:
        print("plot:", plot(rows, args.plot, policies))
    return 0


def run_concept_data(args: argparse.Namespace) -> int:
    from lens.research.new_concept import write_concept_shards
    from lens.resolution import validate_size

    if args.n < 1:
        raise LensError(f"--n must be at least 1, got {args.n}")
    validate_size(args.size, args.size)
    out = write_concept_shards(args.out, args.n, args.seed, args.size)
    print(f"wrote {args.n} crescent scenes to {out}; train with lens finetune {out} --base ...")
    return 0


def run_concept_eval(args: argparse.Namespace) -> int:
    from lens.inference import load_pipeline
    from lens.lora import check_lora_options, use_lora
    from lens.research.new_concept import concept_eval, concept_grid

    if args.seeds < 1 or (args.steps is not None and args.steps < 1):
        raise LensError("--seeds and --steps must be at least 1")
    check_guidance("--guidance", args.guidance)
    lora = check_lora_options(args.lora, args.lora_scale)
    pipe = load_pipeline(args.model)
    if lora is not None:
        use_lora(pipe, lora, args.lora_scale)
    result = concept_eval(pipe, args.seeds, args.steps, args.guidance, grounded=not args.plain)
    if args.grid:
        concept_grid(result["images"], args.seeds).save(args.grid)
    print(f"crescent {result['crescent']:.3f} | crescent in the named colour {result['crescent_and_colour']:.3f} "
          f"| {len(result['rows'])} images")  # fmt: skip
    return 0
