"""`lens finetune DATA --base PIPELINE_OR_HUB_ID --out OUT [--lora-rank R | --full] [--steps N] [--set ...]`.

DATA is a folder of images with captions (`name.png` + `name.txt`, or a `metadata.jsonl` with
`file_name` and `text`) or shards. The images become shards, small sets are encoded once with the
base's VAE and LM, `lens train` fine-tunes the base (a LoRA, or the whole denoiser with --full) with
sample grids of the captions, and `lens export` writes OUT/pipeline (merged; the adapter in
OUT/pipeline/lora/). `--resume` continues OUT's run from its latest checkpoint.
"""

from __future__ import annotations

from lens.cli.options import add_overrides


def register(subparsers) -> None:
    p = subparsers.add_parser("finetune", help="LoRA or full fine-tune of a pipeline on captioned images")
    p.add_argument(
        "data", metavar="DATA", help="folder of images + captions (.txt or metadata.jsonl), or shards"
    )
    p.add_argument("--base", required=True, metavar="PIPELINE_OR_HUB_ID", help="pipeline folder or hub id")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder (data, run, pipeline)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--lora-rank", type=int, default=16, metavar="R", help="LoRA rank (default 16)")
    kind.add_argument("--full", action="store_true", help="train the whole denoiser instead of a LoRA")
    p.add_argument("--steps", type=int, help="optimiser steps (default 1000; with --resume: the new total)")
    p.add_argument("--batch-size", type=int, default=1, help="images per step and bucket (default 1)")
    add_overrides(p, "training config field, e.g. --set optim.lr=5e-5")
    p.add_argument("--resume", action="store_true", help="continue OUT's run from its latest checkpoint")
    p.set_defaults(func=run)


def run(args) -> int:
    from lens.errors import LensError

    if not args.full and args.lora_rank < 1:
        raise LensError(f"--lora-rank must be >= 1, got {args.lora_rank} (use --full for a full fine-tune)")
    if args.steps is not None and args.steps < 1:
        raise LensError(f"--steps must be >= 1, got {args.steps}")
    if args.batch_size < 1:
        raise LensError(f"--batch-size must be >= 1, got {args.batch_size}")
    from lens.finetune import finetune

    result = finetune(
        args.data, args.base, args.out, lora_rank=0 if args.full else args.lora_rank, steps=args.steps,
        batch_size=args.batch_size, overrides=args.overrides, resume=args.resume,
    )  # fmt: skip
    skipped = result["skipped"]
    note = f" (skipped {sum(skipped.values())}: {', '.join(f'{k} {v}' for k, v in skipped.items())})"
    run = result["run"]
    print(f"fine-tuned on {result['images']} images{note if skipped else ''}, step {run['step']}")
    if result["pipeline"] is None:
        print(f"stopped by {run['stopped']} (checkpoint saved); continue with --resume")
        return 0
    print(
        f"pipeline: {result['pipeline']}" + (f"\nadapter: {result['adapter']}" if result["adapter"] else "")
    )
    return 0
