"""Where does the caption help? Its loss gain on object tokens vs background tokens of a pipeline
(`lens eval object-gain`).

Held-out probe scenes (`lens.research.probes`) at the pipeline's native size; a token is an object
token when over 5 % of its 16x16 pixels change once the objects are removed (`object_mask`). With
fixed noise, per sigma: the velocity loss with the dense caption, with the null condition (zero text
tokens, as in CFG and caption dropout) and the difference, for object and background tokens apart.
docs/nano-experiments.md reads it: a caption that only helps the background has not reached the
objects yet.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lens.latents import LatentCodec, to_tokens
from lens.research.probes import object_mask, probe_scenes
from lens.sampling.schedule import noised

SIGMAS = (0.3, 0.5, 0.7, 0.9)
OBJECT_SHARE = 0.05  # of a token's pixels, for it to count as an object token


@torch.no_grad()
def object_gain(
    pipe, scenes: int = 48, objects: int | None = None, sigmas: Sequence[float] = SIGMAS, seed: int = 0
) -> dict:
    """{"object_tokens": their share of all tokens, "rows": [{"sigma", "object": (caption, null),
    "background": (caption, null)}]}: mean velocity losses (the gain is null - caption)."""
    size = (pipe.config.default_height, pipe.config.default_width)
    probes = probe_scenes(scenes, objects, size)
    h, w = size[0] // 16, size[1] // 16
    masks = [object_mask(p.scene, *size).reshape(h, 16, w, 16).mean((1, 3)) > OBJECT_SHARE for p in probes]
    is_object = torch.from_numpy(np.stack(masks)).reshape(scenes, -1)  # (B, tokens)
    pixels = torch.from_numpy(np.stack([p.pixels for p in probes])).permute(0, 3, 1, 2) * 2 - 1
    x0 = to_tokens(LatentCodec(pipe.vae).encode(pixels).float())  # (B, tokens, 128)
    feats, mask = pipe.encode_prompt([p.caption for p in probes])  # (B, S, L, D), (B, S)
    conditions = {"caption": (feats, mask), "null": (feats[:, :0], mask[:, :0])}
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    rows = []
    for sigma in sigmas:
        x_t = noised(x0, noise, sigma)
        t = torch.full((scenes,), float(sigma))
        err = {}
        for name, (text, text_mask) in conditions.items():
            pred = pipe.transformer(x_t, text, t, image_grid=(h, w), encoder_attention_mask=text_mask).sample
            err[name] = (pred.float() - (noise - x0)).pow(2).mean(-1)  # (B, tokens)
        row = {"sigma": float(sigma)}
        for key, sel in (("object", is_object), ("background", ~is_object)):
            row[key] = (err["caption"][sel].mean().item(), err["null"][sel].mean().item())
        rows.append(row)
    return {"object_tokens": is_object.float().mean().item(), "rows": rows}


def format_gain(result: dict) -> str:
    """A markdown table: per sigma, caption / null / gain (relative gain) on each kind of token."""
    lines = [
        "| sigma | object tokens: caption / null / gain | background tokens: caption / null / gain |",
        "| ---: | --- | --- |",
    ]
    for row in result["rows"]:
        cells = [
            f"{c:.3f} / {u:.3f} / {u - c:.3f} ({(u - c) / u:.0%})"
            for c, u in (row["object"], row["background"])
        ]
        lines.append(f"| {row['sigma']:g} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)
