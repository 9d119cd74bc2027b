"""`lens rl CONFIG --reward SPEC [--set key=value ...] [--run-dir DIR] [--resume]`: DiffusionNFT.

CONFIG is a preset (debug, lens) or a .json/.toml file (a run's own rl.json works). The reward is a
`lens.rewards` spec: nano-eval, judge or module:function. Export the result with `lens export RUN OUT`
(the adapter merged into a pipeline) or `lens export RUN OUT --lora adapter` (the adapter alone).
"""

from __future__ import annotations

from lens.cli.options import add_overrides, add_run_options, run_config


def register(subparsers) -> None:
    p = subparsers.add_parser("rl", help="RL of the denoiser with DiffusionNFT (LoRA) against a reward")
    p.add_argument("config", metavar="CONFIG", help="preset name (debug, lens) or .json/.toml config file")
    p.add_argument("--reward", help="nano-eval, judge or module:function (default: the config's reward)")
    add_overrides(p, "config field, e.g. --set rollout.group_size=8")
    add_run_options(p, "runs/rl-<preset>")
    p.set_defaults(func=run)


def run(args) -> int:
    from lens.rl.config import load_rl_config

    cfg = run_config(args, load_rl_config, reward=args.reward)
    if cfg is None:
        return 0
    from lens.rl.loop import rl

    summary = rl(cfg, resume=args.resume)
    last = summary["history"][-1] if summary["history"] else {}
    stopped = summary["stopped"]
    stop = f", stopped by {stopped} (checkpoint saved; continue with --resume)" if stopped else ""
    print(f"done: step {summary['step']}, reward mean {last.get('reward_mean', float('nan')):.4f}{stop}")
    return 0
