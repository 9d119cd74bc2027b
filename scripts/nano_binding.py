"""Does a nano denoiser colour what its caption names? The colour-swap probe, one row per pipeline.

Held-out scenes, dense captions: with the same noisy latents, the x0 predictions under the true
caption and under a copy whose object colour (or plain background tone) is swapped are decoded and
compared (lens.nano.probes.colour_swap). `swap` 1 = follows the colour word, 0 = ignores it;
`anywhere` (in brackets) counts the colour wherever the model puts it. docs/nano-experiments.md reads it.

    python scripts/nano_binding.py PIPELINE [PIPELINE ...] [--target object|background]
        [--scenes 32] [--objects 1] [--sigmas 0.7 0.9 0.95 0.98 1.0] [--threads 2]
"""

from __future__ import annotations

import argparse

import torch

from lens.inference import load_pipeline
from lens.nano.probes import colour_swap, probe_scenes, x0_reader


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipelines", nargs="+")
    ap.add_argument("--target", choices=("object", "background"), default="object")
    ap.add_argument("--scenes", type=int, default=32, help="scenes drawn (some cannot swap a background)")
    ap.add_argument("--objects", type=int, default=1, help="objects per scene (0: the world's 1-4)")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.7, 0.9, 0.95, 0.98, 1.0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    probes = probe_scenes(args.scenes, args.objects or None)
    print(f"target: {args.target}; swap (anywhere) by sigma")
    print("| pipeline | scenes | " + " | ".join(f"sigma {s}" for s in args.sigmas) + " |")
    print("| --- | ---: |" + " ---: |" * len(args.sigmas))
    for path in args.pipelines:
        pipe = load_pipeline(path)
        rows = colour_swap(x0_reader(pipe, probes), probes, args.target, args.sigmas)
        cells = [f"{r['swap']:.3f} ({r['anywhere']:.3f})" for r in rows.values()]
        n = next(iter(rows.values()))["n"]
        print(f"| {path} | {n} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
