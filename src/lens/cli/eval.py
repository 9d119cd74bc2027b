"""`lens eval`: Nano-Eval, a GenEval-style benchmark for the shapes world, and the nano model's probes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lens.cli.options import add_caption_style, check_guidance
from lens.errors import LensError

BUNDLED = "the bundled Lens-Nano"


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="Nano-Eval: GenEval-style prompts, reference images and scoring")
    sub = p.add_subparsers(dest="eval_command", required=True, metavar="ACTION")

    n = sub.add_parser("nano-prompts", help="write the prompt suite (GenEval metadata JSONL)")
    n.add_argument("--out", required=True, help="e.g. prompts.jsonl")
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--per-tag", type=int, default=32, help="prompts for colors, position and color_attr each")
    n.add_argument(
        "--exclude",
        metavar="FILE",
        help="leave out every prompt of this suite (e.g. RL prompts held out from the default suite)",
    )
    n.add_argument(
        "--coloured-counting",
        type=int,
        default=0,
        metavar="K",
        help="also every shape x count with K random colours ('three red circles'; none in the default suite)",
    )
    n.set_defaults(func=_prompts)

    s = sub.add_parser(
        "nano-score",
        help="score a folder of generated images",
        description="Scores FOLDER in GenEval's layout: FOLDER/<index:05d>/metadata.jsonl (one line of "
        "GenEval metadata) and FOLDER/<index:05d>/samples/<k:04d>.png. Prints per-category and overall scores.",
    )
    s.add_argument("folder")
    s.add_argument(
        "--results", help="also write one JSON line per image here (GenEval's results.jsonl fields)"
    )
    s.add_argument("--json", action="store_true", help="print the scores as JSON instead of a table")
    s.set_defaults(func=_score)

    g = sub.add_parser(
        "nano-run",
        help="generate with a pipeline and score it on Nano-Eval (settings swept)",
        description="The full Nano-Eval protocol on a pipeline: every prompt of the suite, N images each, "
        "for every combination of --guidance, --size and --prompts; prints one table row per setting.",
    )
    g.add_argument("--model", help="pipeline folder (default: the bundled Lens-Nano)")
    g.add_argument("--guidance", type=float, nargs="+", default=[2.0], help="CFG scales (default 2.0)")
    g.add_argument("--size", nargs="+", default=["128x128"], help="HEIGHTxWIDTH sizes (default 128x128)")
    g.add_argument(
        "--prompts",
        choices=("reasoner", "short", "both"),
        default="both",
        help="the nano reasoner's dense rewrites, the short prompts as given, or both (default)",
    )
    g.add_argument("--steps", type=int, default=20)
    g.add_argument("--n-samples", type=int, default=4, help="images per prompt (GenEval uses 4)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch-size", type=int, default=32, help="prompts per pipeline call")
    g.add_argument("--workers", type=int, default=0, help="scoring processes (default: all cores but one)")
    g.add_argument("--device", help="cuda, cpu, ... (default: cuda if available)")
    g.add_argument("--out-dir", help="also write the images in GenEval's layout, one folder per setting")
    g.add_argument("--json", help="also write the rows as JSON to this file")
    add_caption_style(g, "the reasoner's rewrites (use the style the model trained on)")
    g.add_argument(
        "--object-scale",
        type=float,
        help="lay out the reasoner's scenes for objects of this scale (default: the pipeline's "
        "world_object_scale, the world it trained on)",
    )
    g.set_defaults(func=_run)

    b = sub.add_parser(
        "probe",
        help="the colour-swap probe: does a model colour what its caption names?",
        description="Held-out scenes at each pipeline's native size, dense captions: with the same noisy "
        "latents, the x0 predictions under the true caption and under a copy whose object colour (or plain "
        "background tone) is swapped are decoded and compared (lens.research.probes). Prints `swap` per sigma, "
        "1 = follows the colour word, 0 = ignores it, and in brackets `anywhere`, the colour wherever the "
        "model puts it. Runs on the CPU.",
    )
    b.add_argument("--model", nargs="+", default=[None], help=f"pipeline folders (default: {BUNDLED})")
    b.add_argument(
        "--target",
        choices=("object", "background", "shape"),
        default="object",
        help="object / background: swap a colour word; shape: swap the first object's shape word",
    )
    b.add_argument("--scenes", type=int, default=32, help="scenes drawn (some cannot swap a background)")
    b.add_argument("--objects", type=int, default=1, help="objects per scene (0: the world's 1-4)")
    b.add_argument("--sigmas", type=float, nargs="+", default=[0.7, 0.9, 0.95, 0.98, 1.0])
    add_caption_style(b, "the probe captions (use the style the model trained on)")
    b.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    b.set_defaults(func=_probe)

    x = sub.add_parser(
        "x0",
        help="a grid of a model's x0 predictions by noise level: where does it stop reading shapes?",
        description="Held-out free scenes (top row), noised to each sigma with fixed noise, and the model's "
        "x0 prediction under each scene's own caption decoded below (lens.research.probes.x0_grid). Runs on the CPU.",
    )
    x.add_argument("--model", help=f"pipeline folder (default: {BUNDLED})")
    x.add_argument("--out", required=True, help="PNG file to write")
    x.add_argument("--scenes", type=int, default=8, help="columns (default 8)")
    x.add_argument("--objects", type=int, default=1, help="objects per scene (0: the world's 1-4)")
    x.add_argument("--object-scale", type=float, default=1.0, help="object sizes as the model trained on")
    x.add_argument("--sigmas", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.8, 0.9, 0.97])
    x.add_argument("--brief", action="store_true", help="brief captions ('a photo of a red heart')")
    add_caption_style(x, "the dense captions (use the style the model trained on)")
    x.set_defaults(func=_x0)

    a = sub.add_parser(
        "gate",
        help="the cheap gate: does a model draw the colour and the shape it is asked for?",
        description="Generates 'a photo of a {colour} {shape}' for every chromatic colour and shape, --seeds "
        "images each, at the pipeline's native size, and prints the shares of images in which the Nano-Eval "
        "analyser finds the named colour, the named shape, and both on one object (lens.eval.gates).",
    )
    a.add_argument("--model", help=f"pipeline folder (default: {BUNDLED})")
    a.add_argument("--seeds", type=int, default=2, help="images per prompt (default 2: 128 images)")
    a.add_argument("--guidance", type=float, help="CFG scale (default: the pipeline's)")
    a.add_argument("--steps", type=int, default=20)
    a.add_argument("--device", help="cuda, cpu, ... (default: cuda if available)")
    a.add_argument("--json", help="also write the scores as JSON to this file")
    a.add_argument(
        "--prompts",
        choices=("short", "reasoner"),
        default="short",
        help="the short prompts as given (default), or the nano reasoner's dense rewrites of them",
    )
    add_caption_style(a, "the reasoner's rewrites (use the style the model trained on)")
    a.set_defaults(func=_gate)

    c = sub.add_parser(
        "colour-share",
        help="how much of a colour token's text feature (after txt_in) its colour word decides",
        description="Captions held-out probe scenes once per colour of their first object and prints the "
        "share of the denoiser's projected text feature at the colour token that varies with the colour "
        "word: 0 = the word changes nothing, ~1 = the token is all colour (lens.research.colour_share).",
    )
    c.add_argument("--model", help=f"pipeline folder (default: {BUNDLED})")
    c.add_argument("--scenes", type=int, default=32, help="probe scenes (1-4 objects each)")
    add_caption_style(c, "the probe captions (use the style the model trained on)")
    c.set_defaults(func=_colour_share)

    t = sub.add_parser(
        "text-gain",
        help="how much the captions help a run's saved checkpoints (val loss with and without them)",
        description="Recomputes the `val-loss` hook on CPU for saved checkpoints: the loss of fixed samples "
        "at fixed sigmas and noise, with their dense captions and with the null condition, and the "
        "difference (text gain). With the defaults the values equal those the run logged. --shards, --caption "
        "and --sizes score held-out data, brief captions or one row per stored resolution, so runs that still "
        "score at chance on Nano-Eval can be compared (docs/nano-experiments.md).",
    )
    t.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="`lens train` run directories (one table)")
    t.add_argument("--step", type=int, nargs="*", default=[], help="checkpoint steps (default: the latest)")
    t.add_argument("--samples", type=int, default=8, help="fixed samples (the hook uses 8)")
    t.add_argument(
        "--weights", choices=("model", "ema"), default="model", help="the hook scores the raw weights"
    )
    t.add_argument("--shards", help="score these shards instead of the run's own (e.g. a held-out world)")
    t.add_argument("--caption", choices=("dense", "brief"), default="dense", help="caption to condition on")
    t.add_argument(
        "--sizes", nargs="*", default=[], help="one row per HEIGHTxWIDTH (samples stored at that size)"
    )
    t.add_argument("--json", help="also write the rows (with each run's name and the caption) to this file")
    t.set_defaults(func=_text_gain)

    o = sub.add_parser(
        "object-gain",
        help="where the caption helps: its loss gain on object tokens vs background tokens",
        description="Held-out scenes at the pipeline's native size, encoded with its VAE and LM (dense "
        "captions); per sigma, the velocity loss with the caption, with the null condition and the "
        "difference, on the tokens the objects cover and on the rest (lens.research.object_gain). Runs on the CPU.",
    )
    o.add_argument("--model", help=f"pipeline folder (default: {BUNDLED})")
    o.add_argument("--scenes", type=int, default=48)
    o.add_argument("--objects", type=int, default=0, help="objects per scene (0: the world's 1-4)")
    o.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    o.set_defaults(func=_object_gain)

    r = sub.add_parser(
        "render-reference", help="render the world's own images for each prompt (a perfect generator)"
    )
    r.add_argument("--out", required=True, help="output folder (GenEval layout)")
    r.add_argument("--prompts", help="prompt JSONL (default: the built-in suite)")
    r.add_argument("--size", default="64x64", help="HEIGHTxWIDTH, multiples of 16")
    r.add_argument("--n-samples", type=int, default=4, help="images per prompt (GenEval uses 4)")
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=_reference)


def _prompts(args: argparse.Namespace) -> int:
    from lens.eval.prompts import nano_prompts, read_prompts, write_prompts

    prompts = nano_prompts(args.seed, args.per_tag, args.coloured_counting)
    if args.exclude:
        held_out = {md["prompt"] for md in read_prompts(args.exclude)}
        prompts = [md for md in prompts if md["prompt"] not in held_out]
        if not prompts:
            raise LensError(f"every prompt is in {args.exclude}; choose another --seed or a larger --per-tag")
    write_prompts(args.out, prompts)
    print(f"wrote {len(prompts)} prompts to {args.out}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from lens.eval.rules import format_scores
    from lens.eval.score import image_counts, score_folder, write_results

    results, scores = score_folder(args.folder)
    if args.results:
        write_results(args.results, results)
    print(json.dumps(scores, indent=2) if args.json else format_scores(scores, image_counts(results)))
    return 0


def _run(args: argparse.Namespace) -> int:
    import os

    import torch

    from lens.eval.sweep import format_rows, settings, sweep
    from lens.inference import load_pipeline
    from lens.resolution import parse_size

    if args.n_samples < 1 or args.steps < 1 or args.batch_size < 1:
        raise LensError("--n-samples, --steps and --batch-size must be at least 1")
    check_guidance("--guidance", args.guidance)
    sizes = [parse_size(s) for s in args.size]
    modes = {"reasoner": [True], "short": [False], "both": [True, False]}[args.prompts]
    if args.object_scale is not None:
        from lens.world.sampler import check_object_scale

        check_object_scale(args.object_scale)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = load_pipeline(args.model, device=device, dtype=torch.float32)  # as shipped: fp32
    pipe.set_progress_bar_config(disable=True)
    workers = args.workers or max((os.cpu_count() or 1) - 1, 0)
    rows = sweep(
        pipe, settings(args.guidance, sizes, modes), steps=args.steps, n_samples=args.n_samples,
        seed=args.seed, batch_size=args.batch_size, workers=workers, out_dir=args.out_dir,
        caption_style=args.caption_style, object_scale=args.object_scale,
    )  # fmt: skip
    print(format_rows(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def _probe(args: argparse.Namespace) -> int:
    import torch

    from lens.inference import load_pipeline
    from lens.research.probes import pipeline_colour_swap

    if args.threads < 1:
        raise LensError(f"--threads must be at least 1, got {args.threads}")
    if not all(0.0 <= s <= 1.0 for s in args.sigmas):
        raise LensError(f"--sigmas must lie in 0..1, got {args.sigmas}")
    torch.set_num_threads(args.threads)
    print(f"target: {args.target}; swap (anywhere) by sigma")
    print("| pipeline | scenes | " + " | ".join(f"sigma {s:g}" for s in args.sigmas) + " |")
    print("| --- | ---: |" + " ---: |" * len(args.sigmas))
    for model in args.model:
        pipe = load_pipeline(model)
        pipe.set_progress_bar_config(disable=True)
        rows = pipeline_colour_swap(
            pipe, args.scenes, args.objects or None, args.target, args.sigmas, args.caption_style
        )
        cells = [
            f"{r['swap']:.3f}" + (f" ({r['anywhere']:.3f})" if "anywhere" in r else "") for r in rows.values()
        ]
        n = next(iter(rows.values()))["n"]
        print(f"| {model or BUNDLED} | {n} | " + " | ".join(cells) + " |", flush=True)
    return 0


def _x0(args: argparse.Namespace) -> int:
    from PIL import Image

    from lens.inference import load_pipeline
    from lens.research.probes import probe_scenes, x0_grid, x0_reader
    from lens.world.sampler import check_object_scale

    if args.scenes < 1 or not 0 <= args.objects <= 4:
        raise LensError("--scenes must be at least 1 and --objects 0..4")
    if not all(0.0 <= s <= 1.0 for s in args.sigmas):
        raise LensError(f"--sigmas must lie in 0..1, got {args.sigmas}")
    scale = check_object_scale(args.object_scale)
    pipe = load_pipeline(args.model, device="cpu")
    size = (pipe.config.default_height, pipe.config.default_width)
    probes = probe_scenes(args.scenes, args.objects or None, size, args.caption_style, scale, args.brief)
    grid = x0_grid(x0_reader(pipe, probes), probes, args.sigmas)
    Image.fromarray((grid * 255).round().astype("uint8")).save(args.out)
    print(f"wrote {args.out}: rows = the scenes, then sigma " + ", ".join(f"{s:g}" for s in args.sigmas))
    return 0


def _gate(args: argparse.Namespace) -> int:
    import torch

    from lens.eval.gates import colour_shape_gate
    from lens.eval.sweep import pipeline_generator
    from lens.inference import load_pipeline

    if args.seeds < 1 or args.steps < 1:
        raise LensError("--seeds and --steps must be at least 1")
    check_guidance("--guidance", args.guidance)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = load_pipeline(args.model, device=device, dtype=torch.float32)  # as shipped: fp32
    pipe.set_progress_bar_config(disable=True)
    rewrite = None
    if args.prompts == "reasoner":
        from lens.world.reasoner import rewrite_prompt

        scale = float(pipe.config.get("world_object_scale", 1.0))

        def rewrite(prompt: str, seed: int) -> str:
            return rewrite_prompt(prompt, seed, args.caption_style, scale)

    scores = colour_shape_gate(
        pipeline_generator(pipe, args.steps, args.guidance), args.seeds, rewrite=rewrite
    )
    print("| pipeline | colour | shape | both | images |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(
        f"| {args.model or BUNDLED} | {scores['colour']:.3f} | {scores['shape']:.3f} "
        f"| {scores['both']:.3f} | {scores['n']} |"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(scores, indent=2) + "\n")
    return 0


def _colour_share(args: argparse.Namespace) -> int:
    from lens.inference import load_pipeline
    from lens.research.colour_share import pipeline_colour_share

    if args.scenes < 1:
        raise LensError(f"--scenes must be at least 1, got {args.scenes}")
    pipe = load_pipeline(args.model)
    result = pipeline_colour_share(pipe, args.scenes, args.caption_style)
    print("| pipeline | colour share | scenes |")
    print("| --- | ---: | ---: |")
    print(f"| {args.model or BUNDLED} | {result['share']:.4f} | {result['n']} |")
    return 0


def _text_gain(args: argparse.Namespace) -> int:
    from lens.research.text_gain import run_text_gain
    from lens.resolution import parse_size

    sizes = [parse_size(s) for s in args.sizes]
    print(f"captions: {args.caption}")
    print("| run | step | weights | size | samples | val loss | null | text gain | gain / loss |")
    print("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    kept = []
    for run_dir in args.run_dirs:
        rows = run_text_gain(run_dir, args.step, args.samples, args.weights, args.shards, args.caption, sizes)
        kept += [{"run": Path(run_dir).name, "caption": args.caption, **r} for r in rows]
        for r in rows:
            val, null, gain = r["eval/val_loss"], r["eval/val_loss_null"], r["eval/text_gain"]
            print(
                f"| {Path(run_dir).name} | {r['step']} | {r['weights']} | {r['size']} | {r['samples']} "
                f"| {val:.4f} | {null:.4f} | {gain:.4f} | {gain / val:.1%} |",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(kept, indent=2) + "\n")
    return 0


def _object_gain(args: argparse.Namespace) -> int:
    import torch

    from lens.inference import load_pipeline
    from lens.research.object_gain import format_gain, object_gain

    if args.scenes < 1 or not 0 <= args.objects <= 4 or args.threads < 1:
        raise LensError("--scenes and --threads must be at least 1 and --objects 0..4")
    torch.set_num_threads(args.threads)
    result = object_gain(load_pipeline(args.model, device="cpu"), args.scenes, args.objects or None)
    print(f"{args.scenes} scenes; object tokens are {result['object_tokens']:.1%} of all")
    print(format_gain(result))
    return 0


def _reference(args: argparse.Namespace) -> int:
    from lens.eval.prompts import read_prompts
    from lens.eval.reference import render_reference
    from lens.resolution import parse_size

    h, w = parse_size(args.size)
    prompts = read_prompts(args.prompts) if args.prompts else None
    n = render_reference(args.out, prompts, h, w, args.n_samples, args.seed)
    print(f"wrote {n} reference images at {h}x{w} to {args.out}")
    return 0
