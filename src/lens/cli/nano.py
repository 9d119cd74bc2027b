"""`lens nano`: the Lens-Nano laptop model's parts.

`lens nano build-components OUT_DIR` trains the frozen components from nothing on the shapes world
(tokenizer, GPT-OSS-architecture LM, FLUX.2-class VAE) and writes them as `tokenizer/`,
`text_encoder/` and `vae/` plus `nano_components.json` (measurements and the denoiser settings).
"""

from __future__ import annotations

import argparse

from lens.errors import LensError


def register(sub) -> None:
    p = sub.add_parser("nano", help="Lens-Nano: train the laptop model's frozen components")
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
