"""`lens export RUN_DIR OUT_DIR`: write a trained run as a diffusers pipeline folder."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a training run as a pipeline folder")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument(
        "--weights", choices=("auto", "ema", "model"), default="auto", help="auto: EMA when the run kept one"
    )
    p.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    p.add_argument("--dtype", choices=("auto", "bfloat16", "float32"), default="auto",
                   help="transformer weights dtype (auto: bf16 for bf16 runs)")  # fmt: skip
    p.add_argument(
        "--lora", choices=("merge", "adapter"), default="merge",
        help="LoRA runs: merge = a pipeline with the adapter merged in, plus the adapter in OUT_DIR/lora; "
        "adapter = only OUT_DIR/pytorch_lora_weights.safetensors, for --lora on the base model",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args) -> int:
    from lens.export import export_run

    out = export_run(
        args.run_dir, args.out_dir, weights=args.weights, step=args.step, dtype=args.dtype, lora=args.lora
    )
    print(f"exported {args.run_dir} -> {out}")
    return 0
