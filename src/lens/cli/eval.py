"""`lens eval`: Nano-Eval, a GenEval-style benchmark for the shapes world."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="Nano-Eval: GenEval-style prompts, reference images and scoring")
    sub = p.add_subparsers(dest="eval_command", required=True, metavar="ACTION")

    n = sub.add_parser("nano-prompts", help="write the prompt suite (GenEval metadata JSONL)")
    n.add_argument("--out", required=True, help="e.g. prompts.jsonl")
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--per-tag", type=int, default=32, help="prompts for colors, position and color_attr each")
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
    from lens.eval.prompts import nano_prompts, write_prompts

    prompts = nano_prompts(args.seed, args.per_tag)
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


def _reference(args: argparse.Namespace) -> int:
    from lens.eval.prompts import read_prompts
    from lens.eval.reference import render_reference
    from lens.world.render import parse_size

    h, w = parse_size(args.size)
    prompts = read_prompts(args.prompts) if args.prompts else None
    n = render_reference(args.out, prompts, h, w, args.n_samples, args.seed)
    print(f"wrote {n} reference images at {h}x{w} to {args.out}")
    return 0
