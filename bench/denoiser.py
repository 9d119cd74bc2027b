"""Time the Lens denoiser: seconds per step and achieved TFLOP/s, against a same-run baseline.

Variants (each a full sampling loop of --steps Euler steps on random weights):
  released  the released loop: one 2B batch per step, uncond = padded text with an all-false mask
            (so attention runs masked), even when guidance is off.
  eager     our pipeline: cond pass without a mask + uncond pass with ZERO text tokens; no uncond
            pass at all with --no-cfg.
  compiled  as eager, with each block under torch.compile(fullgraph=True).

    python bench/denoiser.py                                  # tiny config, whatever device is present
    python bench/denoiser.py --config lens --height 1024 --width 1024 --steps 20 --dtype bf16
    python bench/denoiser.py --config lens --steps 4 --no-cfg --variants eager compiled
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lens.model.flops import forward_flops
from lens.model.transformer import LensTransformer2DModel

CONFIGS = {
    "lens": {},  # the released 4.1B shapes
    "tiny": dict(
        num_layers=2,
        num_attention_heads=4,
        attention_head_dim=32,
        axes_dims_rope=(8, 12, 12),
        enc_hidden_dim=64,
        selected_layer_index=(0, 1),
    ),
}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def build(config: str, device, dtype, **overrides) -> LensTransformer2DModel:
    kwargs = json.loads(Path(config).read_text()) if config.endswith(".json") else CONFIGS[config]
    with torch.device("meta"):
        model = LensTransformer2DModel(**(kwargs | overrides))
    model = model.to_empty(device=device).to(dtype)
    gen = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # random weights: the timing must not see zeros
            p.normal_(0, 0.02, generator=gen) if p.ndim > 1 else p.uniform_(0.9, 1.1, generator=gen)
    return model.eval()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_loop(model, variant, x, cond, steps, cfg, grid):
    """One sampling loop; returns the final latents (B, N, C)."""
    b = x.shape[0]
    uncond_empty = cond[:, :0]
    for i in range(steps):
        sigma = torch.full((b,), 1 - i / steps, device=x.device)
        if variant == "released":
            feats = torch.cat([cond, torch.zeros_like(cond)])
            mask = torch.cat(
                [
                    torch.ones(cond.shape[:2], dtype=torch.bool, device=x.device),
                    torch.zeros(cond.shape[:2], dtype=torch.bool, device=x.device),
                ]
            )
            out = model(
                torch.cat([x, x]), feats, sigma.repeat(2), image_grid=grid, encoder_attention_mask=mask
            ).sample
            v = out[:b] if not cfg else out[b:] + 5.0 * (out[:b] - out[b:])
        else:
            v = model(x, cond, sigma, image_grid=grid).sample
            if cfg:
                u = model(x, uncond_empty, sigma, image_grid=grid).sample
                v = u + 5.0 * (v - u)
        x = x - v / steps
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="tiny", help=f"{', '.join(CONFIGS)} or a config.json path")
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--text-tokens", type=int, default=300)
    ap.add_argument("--no-cfg", action="store_true")
    ap.add_argument("--dtype", choices=DTYPES, default="bf16")
    ap.add_argument("--variants", nargs="+", default=["released", "eager", "compiled"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = DTYPES[args.dtype]
    model = build(args.config, device, dtype)
    h, w = args.height // 16, args.width // 16
    cfg = not args.no_cfg
    n_layers, d_enc = len(model.config.selected_layer_index), model.config.enc_hidden_dim
    gen = torch.Generator(device).manual_seed(1)
    x = torch.randn(args.batch, h * w, model.config.in_channels, device=device, dtype=dtype, generator=gen)
    cond = torch.randn(
        args.batch, args.text_tokens, n_layers, d_enc, device=device, dtype=dtype, generator=gen
    )

    rows = []
    for variant in args.variants:
        if variant == "compiled":
            for block in model.transformer_blocks:
                block.compile(fullgraph=True)
        passes = (
            [(args.text_tokens, 2 * args.batch)]
            if variant == "released"
            else ([(args.text_tokens, args.batch)] + ([(0, args.batch)] if cfg else []))
        )
        flops = args.steps * sum(forward_flops(model.config, h * w, s, b) for s, b in passes)
        with torch.inference_mode():
            run_loop(model, variant, x, cond, min(2, args.steps), cfg, (h, w))  # warm-up / compile
            times = []
            for _ in range(args.repeats):
                sync(device)
                t0 = time.perf_counter()
                run_loop(model, variant, x, cond, args.steps, cfg, (h, w))
                sync(device)
                times.append(time.perf_counter() - t0)
        best = sorted(times)[len(times) // 2]
        rows.append(
            dict(variant=variant, seconds=best, per_step=best / args.steps, tflops=flops / best / 1e12)
        )

    name = (
        torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(
        f"\ndenoiser {args.config} {args.height}x{args.width} batch {args.batch} steps {args.steps} "
        f"text {args.text_tokens} cfg {'on' if cfg else 'off'} {args.dtype} on {name}"
    )
    print(f"{'variant':<10} {'total s':>9} {'s/step':>9} {'TFLOP/s':>9} {'speed-up':>9}")
    for r in rows:
        print(
            f"{r['variant']:<10} {r['seconds']:>9.3f} {r['per_step']:>9.4f} {r['tflops']:>9.1f} "
            f"{rows[0]['seconds'] / r['seconds']:>8.2f}x"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(dict(args=vars(args), device=name, rows=rows), indent=1))


if __name__ == "__main__":
    main()
