"""`lens distill TEACHER OUT [--config CONFIG] [--set key=value ...] [--run-dir DIR] [--resume]`.

Distils the pipeline folder TEACHER into a few-step student (DMD2 + decoupled DMD + an adversarial
term, REFERENCE 10) and writes it to OUT as a pipeline whose defaults are its step count and no CFG.
CONFIG is a preset (lens, debug) or a .json/.toml file (a run's own distill.json works).
"""

from __future__ import annotations

from lens.cli.options import add_overrides, add_run_options, run_config


def register(subparsers) -> None:
    p = subparsers.add_parser("distill", help="distil a pipeline into a few-step student without CFG (DMD2)")
    p.add_argument("teacher", metavar="TEACHER", help="pipeline folder to distil (tiny: a random one, tests)")
    p.add_argument("out", metavar="OUT", help="folder for the student's pipeline (written when the run ends)")
    p.add_argument(
        "--config", default="lens", help="preset (lens, debug) or .json/.toml file (default: lens)"
    )
    add_overrides(p, "config field, e.g. --set student.steps=2")
    add_run_options(p, "runs/distill-<name of OUT>")
    p.set_defaults(func=run)


def run(args) -> int:
    from lens.distill.config import load_distill_config

    args.overrides = [f"teacher={args.teacher}", f"out={args.out}", *args.overrides]  # checked with the rest
    cfg = run_config(args, load_distill_config)
    if cfg is None:
        return 0
    from lens.distill.loop import distill

    summary = distill(cfg, resume=args.resume)
    last = summary["history"][-1] if summary["history"] else {}
    if summary["stopped"]:
        print(
            f"stopped by {summary['stopped']} at step {summary['step']} (checkpoint saved); continue with --resume"
        )
    else:
        print(
            f"done: step {summary['step']}, loss {last.get('loss', float('nan')):.4f}; student in {summary['out']}"
        )
    return 0
