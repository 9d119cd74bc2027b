"""Peak memory of each memory mode of LensPipeline, and the output error FP8 storage costs.

Each (mode, size) runs in a fresh subprocess, so one mode's allocations never count against another.
Memory is what the run itself adds above the process after imports: on CUDA torch's allocated bytes
(resident weights, then max_memory_allocated during the call); on CPU the process's RSS (VmRSS, then
the peak VmHWM, reset through /proc/self/clear_refs once the models are built). Modes:

  plain             every model resident on the device
  model-offload     pipe.enable_model_cpu_offload(): one model on the device at a time
  group-offload     pipe.enable_group_offload(block_level, 1 block per group; the VAE leaf by leaf)
  group-offload-leaf  the same at leaf level
  fp8               lens.memory.enable_fp8_storage(transformer): weights in float8 except modulation,
                    norms and embeddings
  embeds            the text encoder never built: precomputed prompt_embeds
  fp8+embeds        both

The offload modes only move weights between an accelerator and CPU RAM: on a CPU-only machine there is
nothing to measure and they are skipped. The models are random: the released 4.1B denoiser layout
(--denoiser-layers of its 48 blocks), a GPT-OSS of hidden 2880 (--lm-layers, 4 experts; a stand-in
far smaller than the 21B GPT-OSS-20B) and, on CUDA, FLUX.2's VAE (on CPU the tiny test VAE and no
decode: latents out). The relative error is |out - ref| / |ref| of the final output against the mode
the row differs from by one lever (fp8 against plain), on the same seed.

    python bench/memory.py                                  # 1024^2 and 1440^2, whatever device is present
    python bench/memory.py --sizes 512 1024 --denoiser-layers 2 --lm-layers 2 --steps 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from denoiser import DTYPES, build
from lens.memory import enable_fp8_storage

MODES = ["plain", "model-offload", "group-offload", "group-offload-leaf", "fp8", "embeds", "fp8+embeds"]
OFFLOAD_MODES = {"model-offload", "group-offload", "group-offload-leaf"}
REFERENCE = {"fp8": "plain", "fp8+embeds": "embeds"} | dict.fromkeys(OFFLOAD_MODES, "plain")
LM_WIDTH = 2880
PROMPT = "a red fox in fresh snow beside a wooden cabin, morning light, a sign that says LENS"
GB = 1e9


def status_gb(field: str) -> float:
    """VmRSS / VmHWM of this process in GB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / GB
    raise RuntimeError(f"no {field} in /proc/self/status")


def used_gb(device) -> float:
    return torch.cuda.memory_allocated() / GB if device.type == "cuda" else status_gb("VmRSS")


def reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def peak_gb(device) -> float:
    return torch.cuda.max_memory_allocated() / GB if device.type == "cuda" else status_gb("VmHWM")


def pipeline(args, mode, device, dtype):
    """The pipeline set up for `mode`, and the text arguments of its call."""
    from lens.latents import tiny_flux2_vae
    from lens.pipeline import LensPipeline
    from lens.sampling.schedule import make_scheduler
    from lens.text.testing import tiny_gpt_oss, tiny_harmony_tokenizer

    layers = tuple(range(args.lm_layers))
    transformer = build(
        "lens", torch.device("cpu"), dtype, num_layers=args.denoiser_layers, selected_layer_index=layers
    )
    if "fp8" in mode:
        enable_fp8_storage(transformer, compute_dtype=dtype)
    embeds = "embeds" in mode
    if device.type == "cuda":
        from diffusers import AutoencoderKLFlux2

        vae = AutoencoderKLFlux2().to(dtype)  # FLUX.2's VAE layout, random weights
    else:
        vae = tiny_flux2_vae()
    pipe = LensPipeline(
        scheduler=make_scheduler(),
        vae=vae,
        text_encoder=None if embeds else tiny_gpt_oss(args.lm_layers, LM_WIDTH, seed=0).to(dtype),
        tokenizer=None if embeds else tiny_harmony_tokenizer(),
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    if mode == "model-offload":
        pipe.enable_model_cpu_offload(device=device)
    elif mode.startswith("group-offload"):
        level = "leaf_level" if mode.endswith("leaf") else "block_level"
        pipe.enable_group_offload(device, offload_type=level, num_blocks_per_group=1)
    else:
        pipe.to(device)
    if not embeds:
        return pipe, dict(prompt=PROMPT)
    gen = torch.Generator().manual_seed(0)  # features of a prompt encoded elsewhere, once
    return pipe, dict(prompt_embeds=torch.randn(1, args.text_tokens, len(layers), LM_WIDTH, generator=gen))


def child(args) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = DTYPES[args.dtype]
    base = used_gb(device)
    pipe, text = pipeline(args, args.child, device, dtype)
    resident = used_gb(device) - base
    reset_peak(device)
    t0 = time.perf_counter()
    out = pipe(
        **text,
        height=args.size,
        width=args.size,
        num_inference_steps=args.steps,
        guidance_scale=args.cfg,
        generator=torch.Generator().manual_seed(1),
        output_type="pt" if device.type == "cuda" else "latent",
    ).images
    seconds = time.perf_counter() - t0
    torch.save(out.float().cpu(), Path(args.out) / f"{args.child}-{args.size}.pt")
    print(json.dumps(dict(resident=resident, peak=peak_gb(device) - base, seconds=seconds)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 1440])
    ap.add_argument("--modes", nargs="+", choices=MODES, default=MODES)
    ap.add_argument("--denoiser-layers", type=int, default=48 if cuda else 2)
    ap.add_argument("--lm-layers", type=int, default=4)
    ap.add_argument("--text-tokens", type=int, default=128, help="length of the precomputed prompt_embeds")
    ap.add_argument("--steps", type=int, default=4 if cuda else 1)
    ap.add_argument("--cfg", type=float, default=5.0 if cuda else 1.0)
    ap.add_argument("--dtype", choices=DTYPES, default="bf16" if cuda else "fp32")
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    modes = [m for m in args.modes if cuda or m not in OFFLOAD_MODES]
    if skipped := [m for m in args.modes if m not in modes]:
        print(
            f"skipped on CPU (offload moves weights between an accelerator and CPU RAM): {', '.join(skipped)}"
        )
    common = [
        f"--{k.replace('_', '-')}={getattr(args, k)}"
        for k in ("denoiser_layers", "lm_layers", "text_tokens", "steps", "cfg", "dtype")
    ]
    rows = {}
    with tempfile.TemporaryDirectory() as out:
        for size in args.sizes:
            for mode in modes:
                cmd = [sys.executable, __file__, f"--child={mode}", f"--size={size}", f"--out={out}", *common]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(f"{mode} at {size}^2 failed:\n{proc.stderr[-3000:]}")
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                ref = REFERENCE.get(mode)
                if ref in modes:
                    a, b = (torch.load(Path(out) / f"{m}-{size}.pt") for m in (mode, ref))
                    row["error"] = ((a - b).norm() / b.norm()).item()
                rows[mode, size] = row
                print(f"  {mode} {size}^2: {row}", file=sys.stderr)

    name = torch.cuda.get_device_name() if cuda else "cpu (1 process per mode)"
    print(
        f"\nLensPipeline memory, denoiser 4.1B layout x {args.denoiser_layers} blocks, GPT-OSS {LM_WIDTH} x "
        f"{args.lm_layers} layers, {args.steps} steps, CFG {args.cfg}, {args.dtype}, on {name}"
    )
    print(
        f"{'mode':<19} {'size':>5} {'weights GB':>11} {'peak GB':>8} {'vs plain':>9} {'rel. error':>11} {'s':>7}"
    )
    for (mode, size), r in rows.items():
        plain = rows.get(("plain", size))
        ratio = f"{r['peak'] / plain['peak']:.2f}x" if plain else "-"
        error = f"{r['error']:.2e}" if "error" in r else "-"
        print(
            f"{mode:<19} {size:>5} {r['resident']:>11.2f} {r['peak']:>8.2f} {ratio:>9} {error:>11} {r['seconds']:>7.1f}"
        )


if __name__ == "__main__":
    main()
