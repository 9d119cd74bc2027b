"""`lens train CONFIG [--set key=value ...] [--run-dir DIR] [--resume]`: run the training engine.

CONFIG is a preset name (debug, nano, lens-1.2b, lens-stage1, lens-stage2) or a .json/.toml file (a
run's own config.json works). Launch several processes with torchrun, e.g.
`torchrun --nproc_per_node 8 --no-python lens train lens-stage1 --set data.shards=/data/{000..999}.tar`.
"""

from __future__ import annotations

from lens.cli.options import add_overrides


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train the denoiser (single process or torchrun + FSDP2)")
    p.add_argument("config", metavar="CONFIG", help="preset name or .json/.toml config file")
    add_overrides(p)
    p.add_argument("--run-dir", help="run directory (default: runs/<preset>)")
    p.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in the run directory"
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    import os

    from lens.train.presets import load_config

    cfg = load_config(args.config, args.overrides)
    if args.run_dir:
        cfg.run_dir = args.run_dir
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
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
