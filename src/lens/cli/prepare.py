"""`lens prepare SHARDS OUT_DIR [--config CONFIG] [--set ...]`: encode an image source into feature shards.

The frozen VAE and text LM run once; training on the output (`--set data.shards=OUT_DIR`) skips them.
The config (a preset or file) gives the encoders, the model's text layers and the bucket list.
"""

from __future__ import annotations

from lens.cli.options import add_overrides


def register(subparsers) -> None:
    p = subparsers.add_parser("prepare", help="precompute VAE latents and LM features into shards (bf16)")
    p.add_argument(
        "shards",
        metavar="SHARDS",
        help="input images: tar shards or parquet files (folder, glob, brace pattern), as data.shards",
    )
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument(
        "--config", default="debug", help="preset or config file naming encoders, layers and buckets"
    )
    add_overrides(p, "training config field (encoders, model, data.buckets)")
    p.add_argument("--samples-per-shard", type=int, default=1000)
    p.add_argument(
        "--rank", type=int, default=0, help="this worker's index (input parts rank, rank+world, ...)"
    )
    p.add_argument("--world", type=int, default=1, help="number of workers")
    p.set_defaults(func=run)


def run(args) -> int:
    from lens.errors import LensError
    from lens.train.presets import load_config

    if not 0 <= args.rank < args.world:
        raise LensError(f"--rank must be in [0, --world); got rank {args.rank} of {args.world}")
    if args.samples_per_shard < 1:
        raise LensError("--samples-per-shard must be >= 1")
    cfg = load_config(args.config, args.overrides)
    from lens.featurise import prepare_shards

    counts = prepare_shards(
        cfg,
        args.shards,
        args.out_dir,
        samples_per_shard=args.samples_per_shard,
        rank=args.rank,
        world=args.world,
    )
    print(f"prepared {counts['samples']} samples into {counts['shards_written']} shards in {args.out_dir} "
          f"(skipped {counts['bad_samples']} samples, {counts['bad_shards']} shards)")  # fmt: skip
    return 0
