"""Training step benchmark: step time, tokens/s, TFLOP/s and MFU of one config on the present device.

Times forward + backward + AdamW on random latents and text features (no data loading, no encoders),
for two variants in the same process so the ratio is fair:

  --compare ac         activation checkpointing off (baseline) vs on
  --compare compile    eager (baseline) vs per-block torch.compile
  --compare precision  fp32 (baseline) vs bf16 autocast
  --compare packing    the same mixed-size samples as bucket batches (baseline) vs one packed sequence;
                       also reports padding and attention waste
  --compare none       one variant only (e.g. a 4.1B step that fits only with --ac)

Examples:
  python bench/train_step.py --config debug --batch 8 --size 64x64 --compare ac
  python bench/train_step.py --config lens-1.2b --size 512x512 --batch 24 --text-tokens 256 --compare compile
  python bench/train_step.py --config nano --mix 128x128,96x160,160x96 --batch 8 --compare packing
MFU uses the dense bf16 peak of known GPUs (or --peak-tflops); FLOPs count useful work only (PaLM
convention: no recompute, no padding, no masked attention).
"""

from __future__ import annotations

import argparse
import time

import torch

from lens.model.flops import train_step_flops
from lens.train.batches import assemble
from lens.train.denoiser import build_model
from lens.train.metrics import peak_flops, peak_memory_gb
from lens.train.objective import draw_noise, flow_matching_loss, step_generator
from lens.train.parallelize import apply_ac, apply_compile, apply_fsdp
from lens.train.presets import load_config


def make_samples(cfg, sizes, batch, text_tokens, seed=0):
    """Per size, `batch` samples: latents (128, h, w) and text (S_i, L, D) with S_i in [S/2, S]."""
    g = torch.Generator().manual_seed(seed)
    layers, dim = len(cfg.model.selected_layer_index), cfg.model.enc_hidden_dim
    groups = []
    for h, w in sizes:
        lat = [torch.randn(128, h // 16, w // 16, generator=g) for _ in range(batch)]
        lens = torch.randint(max(text_tokens // 2, 1), text_tokens + 1, (batch,), generator=g).tolist()
        groups.append((lat, [torch.randn(s, layers, dim, generator=g) for s in lens]))
    return groups


def microbatches(groups, packed, device):
    if packed:
        lat = [z for g in groups for z in g[0]]
        txt = [t for g in groups for t in g[1]]
        return [assemble([z.to(device) for z in lat], [t.to(device) for t in txt], packed=True)]
    return [
        assemble([z.to(device) for z in g[0]], [t.to(device) for t in g[1]], packed=False) for g in groups
    ]


def waste(inputs):
    """(padding tokens / computed tokens, masked share of the attention score matrix)."""
    pad = sum(i.padding_tokens for i in inputs) / sum(i.computed_tokens for i in inputs)
    scores = useful = 0
    for i in inputs:
        t = i.x0.shape[1] + i.text.shape[1]
        scores += i.x0.shape[0] * t * t
        per = [n + s for n, s in zip(i.image_tokens, i.text_lengths)]
        useful += (
            sum(p * p for p in per)
            if i.pack is not None
            else sum((i.x0.shape[1] + s) * t for s in i.text_lengths)
        )
    return pad, 1 - useful / scores


def run_variant(cfg, groups, device, *, ac, compile_, bf16, packed, steps, warmup, mesh=None):
    with torch.device(device):  # initialise on the device: a 4.1B CPU init takes longer than the timing
        model = build_model(cfg.model, seed=0)
    if ac:
        apply_ac(model)
    if compile_:
        apply_compile(model)
    if mesh is not None:  # the trainer's GPU path: bf16 compute weights from FSDP's policy
        apply_fsdp(model, mesh, torch.bfloat16 if bf16 else None)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs = microbatches(groups, packed, device)
    draws = [draw_noise(cfg.objective, i, step_generator(0, 0, k, 0)) for k, i in enumerate(inputs)]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        for i, (sig, noise) in zip(inputs, draws):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = flow_matching_loss(model, i, sig, noise)
            (loss / len(inputs)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    dt = sorted(times)[len(times) // 2]  # median
    n_img = sum(i.n_samples for i in inputs)
    tokens = sum(sum(i.image_tokens) + sum(i.text_lengths) for i in inputs)
    flops = sum(
        train_step_flops(model.config, n, s) for i in inputs for n, s in zip(i.image_tokens, i.text_lengths)
    )
    mem = peak_memory_gb(device)  # CUDA: peak allocated; CPU: peak resident set of the process
    pad, attn = waste(inputs)
    return {
        "ms": dt * 1e3,
        "img/s": n_img / dt,
        "tok/s": tokens / dt,
        "tflops": flops / dt / 1e12,
        "mem": mem,
        "pad": pad,
        "attn": attn,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="debug")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--size", default="64x64", help="HxW of every sample (ignored with --mix)")
    ap.add_argument("--mix", default="", help="comma list of HxW sizes; --batch samples of each (packing)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--text-tokens", type=int, default=32, help="longest caption; others uniform in [S/2, S]")
    ap.add_argument("--compare", choices=("ac", "compile", "precision", "packing", "none"), default="ac")
    ap.add_argument("--ac", action="store_true", help="activation checkpointing in every variant")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--peak-tflops", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument(
        "--fsdp", action="store_true", help="wrap in FSDP2 over one process, as the trainer does on GPU"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    device = torch.device(args.device)
    sizes = [tuple(int(v) for v in s.split("x")) for s in (args.mix or args.size).split(",")]
    groups = make_samples(cfg, sizes, args.batch, args.text_tokens)
    base = dict(ac=args.ac, compile_=False, bf16=cfg.train.precision == "bf16", packed=False)
    variants = {
        "ac": [("AC off", {}), ("AC on", {"ac": True})],
        "compile": [("eager", {}), ("compile", {"compile_": True})],
        "precision": [("fp32", {"bf16": False}), ("bf16", {"bf16": True})],
        "packing": [("bucketed", {}), ("packed", {"packed": True})],
        "none": [("AC on" if args.ac else "baseline", {})],
    }[args.compare]
    mesh = None
    if args.fsdp:
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh

        from lens.train.distributed import single_process_env

        single_process_env()
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        mesh = init_device_mesh(device.type, (1,))
    peak = peak_flops(device, args.peak_tflops)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"device: {name} | config {args.config} | sizes {args.mix or args.size} x batch {args.batch} | text <= {args.text_tokens}"
    )
    header = f"{'variant':<10} {'step ms':>9} {'img/s':>8} {'tok/s':>9} {'TFLOP/s':>8} {'MFU':>6} {'mem GB':>7} {'pad %':>6} {'attn waste %':>13} {'speed x':>8}"
    print(header)
    print("-" * len(header))
    first = None
    for label, change in variants:
        r = run_variant(
            cfg, groups, device, **{**base, **change}, steps=args.steps, warmup=args.warmup, mesh=mesh
        )
        first = first or r
        mfu = f"{100 * r['tflops'] * 1e12 / peak:5.1f}%" if peak else "   n/a"
        print(
            f"{label:<10} {r['ms']:9.1f} {r['img/s']:8.1f} {r['tok/s']:9.0f} {r['tflops']:8.3f} {mfu:>6} "
            f"{r['mem']:7.2f} {100 * r['pad']:6.1f} {100 * r['attn']:13.1f} {first['ms'] / r['ms']:8.2f}"
        )


if __name__ == "__main__":
    main()
