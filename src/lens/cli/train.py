"""`lens train CONFIG [--set key=value ...] [--run-dir DIR] [--resume]`: run the training engine.

CONFIG is a preset name (debug, nano, lens-1.2b, lens-stage1, lens-stage2) or a .json/.toml file (a
run's own config.json works). Launch several processes with torchrun, e.g.
`torchrun --nproc_per_node 8 --no-python lens train lens-stage1 --set data.shards=/data/{000..999}.tar`.
"""

from __future__ import annotations

from lens.cli.options import add_overrides, add_run_options, run_config


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train the denoiser (single process or torchrun + FSDP2)")
    p.add_argument("config", metavar="CONFIG", help="preset name or .json/.toml config file")
    add_overrides(p)
    add_run_options(p, "runs/<preset>")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from lens.train.presets import load_config

    cfg = run_config(args, load_config)
    if cfg is None:
        return 0
    from lens.train.loop import train

    summary = train(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") != "0":
        return 0
    if summary["stopped"]:  # a scheduler's SIGTERM: the checkpoint is saved, the exit is a clean one
        print(
            f"stopped by {summary['stopped']} at step {summary['step']} (checkpoint saved); continue with --resume"
        )
    else:
        print(f"done: step {summary['step']}, skipped {summary['skipped']}, data {summary['data']}")
    return 0
