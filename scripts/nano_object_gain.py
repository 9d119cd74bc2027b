"""Where does the caption help? Text gain on object tokens vs background tokens of a nano pipeline.

Renders N world scenes at 128x128 with and without their objects (a token counts as an object token
when over 5 % of its 16x16 pixels differ), encodes them with the pipeline's VAE and LM (dense
captions), and prints, per sigma, the velocity loss with the caption, with the null condition, and
the difference, separately for object and background tokens. docs/nano-experiments.md reads it.

    python scripts/nano_object_gain.py PIPELINE [--scenes 48] [--objects N] [--threads 2]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from lens.inference import load_pipeline
from lens.latents import LatentCodec, to_tokens
from lens.nano.probes import object_mask, probe_scenes

SIZE = 128  # the nano's native size: an (8, 8) latent token grid


def scenes(n: int, objects: int | None = None, size: int = SIZE):
    """(B, 3, H, W) pixels in [-1, 1], (B, tokens) bool object-token masks, dense captions."""
    probes = probe_scenes(n, objects, (size, size))
    grid = size // 16
    masks = [object_mask(p.scene, size, size).reshape(grid, 16, grid, 16).mean((1, 3)) > 0.05 for p in probes]
    pixels = torch.from_numpy(np.stack([p.pixels for p in probes])).permute(0, 3, 1, 2) * 2 - 1
    return pixels, torch.from_numpy(np.stack(masks)).reshape(n, -1), [p.caption for p in probes]


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipeline")
    ap.add_argument("--scenes", type=int, default=48)
    ap.add_argument("--objects", type=int, help="objects per scene (default: the world's 1-4)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.pipeline)
    pixels, is_object, captions = scenes(args.scenes, args.objects)
    x0 = to_tokens(LatentCodec(pipe.vae).encode(pixels).float())  # (B, 64, 128)
    grid = (SIZE // 16, SIZE // 16)
    feats, mask = pipe.encode_prompt(captions)  # (B, S, L, D), (B, S)
    conditions = {
        "caption": (feats, mask),
        "null": (feats[:, :0], mask[:, :0]),  # zero text tokens, as in CFG and caption dropout
    }
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    print(f"{args.scenes} scenes; object tokens are {is_object.float().mean():.1%} of all")
    print("| sigma | object tokens: caption / null / gain | background tokens: caption / null / gain |")
    print("| ---: | --- | --- |")
    for sigma in (0.3, 0.5, 0.7, 0.9):
        s = torch.full((x0.shape[0],), sigma)
        x_t = (1 - sigma) * x0 + sigma * noise
        err = {}
        for name, (text, text_mask) in conditions.items():
            pred = pipe.transformer(x_t, text, s, image_grid=grid, encoder_attention_mask=text_mask).sample
            err[name] = (pred.float() - (noise - x0)).pow(2).mean(-1)  # (B, 64)
        cells = []
        for sel in (is_object, ~is_object):
            c, u = err["caption"][sel].mean().item(), err["null"][sel].mean().item()
            cells.append(f"{c:.3f} / {u:.3f} / {u - c:.3f} ({(u - c) / u:.0%})")
        print(f"| {sigma} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
