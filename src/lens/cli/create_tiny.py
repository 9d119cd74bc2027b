"""`lens create-tiny OUT`: write a tiny random-weight pipeline (released layout) for smoke tests."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "create-tiny",
        help="write a tiny random-weight pipeline folder (for smoke tests; its images are noise)",
        description="Write a tiny random-weight LensPipeline in the released diffusers layout.",
    )
    p.add_argument("out", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lens.testing import tiny_random_pipeline

    tiny_random_pipeline(seed=args.seed).save_pretrained(args.out)
    print(args.out)
    return 0
