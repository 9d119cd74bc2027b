"""Probes of what a nano denoiser takes from its caption, on world scenes it never trained on.

- `probe_scenes`: held-out scenes at one size, with their pixels and dense captions in one style.
- `swapped_scene` / `swap_colour`: the same scene with its first object recoloured (or its plain
  background turned from light to dark or back); the dense caption, in the probe's style, then
  differs only in those colour words (and "a" / "an" before them).
- `colour_swap`: does the denoiser's x0 prediction follow a colour word? With the same noisy latents
  and the true or the swapped caption, the decoded x0 predictions are compared inside the changed
  region: `swap` is the shift of its mean colour projected on (new rgb - old rgb), over |new - old|^2,
  so 1 = the prediction follows the caption fully and 0 = the caption's colour word is ignored.
  `anywhere` measures the same shift over the whole image divided by the region's share of it: it
  counts the colour wherever the model puts it (at sigma 1 it cannot know the exact place).
- `shape_swap`: the same for a shape word: the first object takes another shape (same colour, place
  and size), and `swap` is the pixelwise shift of the x0 prediction projected on (new render - old
  render) where the two renders differ, over its squared norm: 1 = the outline follows the caption.
- `x0_reader`: what the probes need, from a `LensPipeline`; `pipeline_colour_swap` runs it all.

docs/nano-experiments.md (fifth session) uses them through `lens eval probe`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lens.errors import LensError
from lens.world.background import DARK, LIGHT
from lens.world.captions import brief_caption, dense_caption
from lens.world.render import render_scene
from lens.world.sampler import random_scene
from lens.world.scene import Scene
from lens.world.vocab import CHROMATIC, COLORS, SHAPES

PROBE_SEED = 10_000  # scene seeds from here on: outside every training set's seed range
# pixels = "changed by the object" above this difference (8-bit levels, max over channels)
CHANGED_LEVELS = 24

# (indices into the probes, one caption per index, sigma) -> decoded x0 predictions (B, H, W, 3) in [0, 1]
ReadX0 = Callable[[list[int], list[str], float], np.ndarray]


@dataclass
class ProbeScene:
    scene: Scene
    caption: str  # dense, phrased with the probe's seed
    pixels: np.ndarray  # (H, W, 3) float32 in [0, 1]
    seed: int
    style: str = "compact"  # the dense caption's style (`lens.world.captions.CAPTION_STYLES`)


def object_mask(scene: Scene, height: int, width: int, index: int | None = None) -> np.ndarray:
    """(H, W) bool: the pixels that change when the objects (or only object `index`) are removed."""
    keep = [] if index is None else [o for i, o in enumerate(scene.objects) if i != index]
    full = np.asarray(render_scene(scene, height, width), dtype=np.int16)
    empty = np.asarray(render_scene(dataclasses.replace(scene, objects=keep), height, width), dtype=np.int16)
    return np.abs(full - empty).max(-1) > CHANGED_LEVELS


def probe_scenes(
    n: int,
    objects: int | None = None,
    size: tuple[int, int] = (128, 128),
    style: str = "compact",
    object_scale: float = 1.0,
    brief: bool = False,
) -> list[ProbeScene]:
    """`n` free scenes (1-4 objects, or exactly `objects`, sizes times `object_scale`) rendered at
    `size` (height, width), with dense captions in `style` (the one the model trained on), or brief
    ones ("a photo of a red heart") for models trained on those."""
    out = []
    for seed in range(PROBE_SEED, PROBE_SEED + n):
        scene = random_scene(seed, objects, object_scale)
        pixels = np.asarray(render_scene(scene, *size), dtype=np.float32) / 255.0
        caption = brief_caption(scene) if brief else dense_caption(scene, seed, style=style)
        out.append(ProbeScene(scene, caption, pixels, seed, style))
    return out


def x0_grid(read: ReadX0, probes: Sequence[ProbeScene], sigmas: Sequence[float]) -> np.ndarray:
    """(H * (1 + len(sigmas)), W * len(probes), 3) in [0, 1]: the probes' images on top, then the
    model's x0 prediction from each one noised to each sigma under its own caption. Where the rows
    keep the shapes the model can read them from the noisy latent; where they turn to blobs, the
    caption alone must decide them."""
    idx = list(range(len(probes)))
    rows = [np.concatenate([p.pixels for p in probes], 1)]
    rows += [np.concatenate(list(read(idx, [p.caption for p in probes], s)), 1) for s in sigmas]
    return np.concatenate(rows, 0).clip(0, 1)


def swapped_scene(probe: ProbeScene, target: str = "object") -> tuple[Scene, tuple, tuple] | None:
    """(scene, old rgb, new rgb) in 8-bit levels, or None when this scene cannot be swapped cleanly.

    target "object": the first object takes another chromatic colour (chosen by the seed);
    "background": a plain light background turns dark, or a dark one light (not mid, gradient or texture).
    """
    scene = probe.scene
    if target == "object":
        obj = scene.objects[0]
        choices = [c for c in CHROMATIC if c != obj.color]
        new = choices[probe.seed % len(choices)]
        objects = [dataclasses.replace(obj, color=new, rgb=COLORS[new]), *scene.objects[1:]]
        return dataclasses.replace(scene, objects=objects), obj.rgb, COLORS[new]
    if target == "background":
        bg = scene.background
        if bg.kind != "plain" or bg.tone not in ("light", "dark"):
            return None
        palette, tone = (DARK, "dark") if bg.tone == "light" else (LIGHT, "light")
        name = sorted(palette)[probe.seed % len(palette)]
        new_bg = dataclasses.replace(bg, name=name, rgb=palette[name], tone=tone)
        return dataclasses.replace(scene, background=new_bg), bg.rgb, palette[name]
    raise ValueError(f"target must be 'object' or 'background', got {target!r}")


def swap_colour(probe: ProbeScene, target: str = "object") -> tuple[str, tuple, tuple] | None:
    """(swapped dense caption, old rgb, new rgb) in [0, 1], or None (see `swapped_scene`)."""
    got = swapped_scene(probe, target)
    if got is None:
        return None
    scene, old_rgb, new_rgb = got
    caption = dense_caption(scene, probe.seed, style=probe.style)
    if caption == probe.caption:
        return None
    return caption, tuple(c / 255.0 for c in old_rgb), tuple(c / 255.0 for c in new_rgb)


def swap_region(probe: ProbeScene, target: str) -> np.ndarray:
    """(H, W) bool: where the swapped colour lives (object interior, or everything but the objects)."""
    h, w = probe.pixels.shape[:2]
    if target == "background":
        return ~object_mask(probe.scene, h, w)
    mask = object_mask(probe.scene, h, w, index=0)
    # the interior only (2 pixels in): anti-aliased edges mix in the background colour
    interior = ndimage.binary_erosion(mask, structure=np.ones((5, 5), bool))
    return interior if interior.sum() >= 20 else mask


def colour_swap(
    read_x0: ReadX0, probes: Sequence[ProbeScene], target: str = "object", sigmas: Sequence[float] = (0.9,)
) -> dict[float, dict[str, float]]:
    """Per sigma: mean `swap`, `anywhere` and `error` (distance of the true-caption colour from the truth).

    Scenes that `swap_colour` skips are left out; `n` says how many were scored.
    """
    items = [(i, p, s) for i, p in enumerate(probes) if (s := swap_colour(p, target)) is not None]
    if not items:
        raise LensError(f"none of the {len(probes)} scenes can swap its {target} colour; use more scenes")
    index = [i for i, _, _ in items]
    regions = np.stack([swap_region(p, target) for _, p, _ in items])  # (B, H, W)
    old = np.array([s[1] for _, _, s in items])  # (B, 3)
    delta = np.array([s[2] for _, _, s in items]) - old
    share = regions.mean((1, 2))  # (B,)
    out = {}
    for sigma in sigmas:
        true = read_x0(index, [p.caption for _, p, _ in items], sigma)  # (B, H, W, 3)
        swapped = read_x0(index, [s[0] for _, _, s in items], sigma)
        inside = [(x[r].mean(0), y[r].mean(0)) for x, y, r in zip(true, swapped, regions)]
        shift = np.array([b - a for a, b in inside])  # (B, 3)
        whole = swapped.mean((1, 2)) - true.mean((1, 2))
        norm = (delta**2).sum(1)
        out[float(sigma)] = {
            "swap": float(((shift * delta).sum(1) / norm).mean()),
            "anywhere": float(((whole * delta).sum(1) / norm / share).mean()),
            "error": float(np.linalg.norm(np.array([a for a, _ in inside]) - old, axis=1).mean()),
            "n": len(items),
        }
    return out


def swap_shape(probe: ProbeScene) -> tuple[str, np.ndarray] | None:
    """(dense caption with the first object's shape swapped, its render (H, W, 3) in [0, 1]), or None
    when the caption does not change."""
    obj = probe.scene.objects[0]
    choices = [s for s in SHAPES if s != obj.shape]
    new = choices[probe.seed % len(choices)]
    scene = dataclasses.replace(
        probe.scene, objects=[dataclasses.replace(obj, shape=new), *probe.scene.objects[1:]]
    )
    caption = dense_caption(scene, probe.seed, style=probe.style)
    if caption == probe.caption:
        return None
    h, w = probe.pixels.shape[:2]
    return caption, np.asarray(render_scene(scene, h, w), dtype=np.float32) / 255.0


def shape_swap(
    read_x0: ReadX0, probes: Sequence[ProbeScene], sigmas: Sequence[float] = (0.9,)
) -> dict[float, dict[str, float]]:
    """Per sigma: mean `swap` of the first object's shape word (see the module docstring) and `n`."""
    items = [(i, p, s) for i, p in enumerate(probes) if (s := swap_shape(p)) is not None]
    if not items:
        raise LensError(f"none of the {len(probes)} scenes can swap its shape; use more scenes")
    index = [i for i, _, _ in items]
    delta = np.stack([s[1] - p.pixels for _, p, s in items])  # (B, H, W, 3) new render - old render
    changed = np.abs(delta).max(-1) > CHANGED_LEVELS / 255.0  # (B, H, W)
    out = {}
    for sigma in sigmas:
        true = read_x0(index, [p.caption for _, p, _ in items], sigma)  # (B, H, W, 3)
        swapped = read_x0(index, [s[0] for _, _, s in items], sigma)
        shift = swapped - true
        scores = [
            float((shift[b][m] * delta[b][m]).sum() / (delta[b][m] ** 2).sum())
            for b, m in enumerate(changed)
            if m.any()
        ]
        out[float(sigma)] = {"swap": float(np.mean(scores)), "n": len(scores)}
    return out


def x0_reader(pipe, probes: Sequence[ProbeScene], seed: int = 0) -> ReadX0:
    """`read_x0` for a LensPipeline: encode the probes' pixels once, fixed noise, decode x0 = x_t - sigma * v."""
    import torch

    from lens.latents import LatentCodec, from_tokens, to_tokens
    from lens.sampling.schedule import noised

    codec = LatentCodec(pipe.vae)
    pixels = torch.from_numpy(np.stack([p.pixels for p in probes])).permute(0, 3, 1, 2) * 2 - 1
    with torch.no_grad():
        latents = codec.encode(pixels.to(pipe.vae.dtype)).float()  # (B, 128, h, w)
    h, w = latents.shape[-2:]
    x0 = to_tokens(latents)  # (B, h*w, 128)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def read(idx: list[int], captions: list[str], sigma: float) -> np.ndarray:
        feats, mask = pipe.encode_prompt(captions)
        x_t = noised(x0[idx], noise[idx], sigma)
        t = torch.full((len(idx),), float(sigma))
        v = pipe.transformer(x_t, feats, t, image_grid=(h, w), encoder_attention_mask=mask).sample.float()
        decoded = codec.decode(from_tokens(x_t - sigma * v, h, w).to(pipe.vae.dtype)).float()
        return ((decoded.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()

    return read


def pipeline_colour_swap(
    pipe,
    scenes: int = 32,
    objects: int | None = 1,
    target: str = "object",
    sigmas: Sequence[float] = (0.9,),
    style: str = "compact",
) -> dict[float, dict[str, float]]:
    """`colour_swap` (target "object" / "background") or `shape_swap` (target "shape") of a
    LensPipeline (on the CPU) over `scenes` probe scenes at its native size."""
    probes = probe_scenes(scenes, objects, (pipe.config.default_height, pipe.config.default_width), style)
    if target == "shape":
        return shape_swap(x0_reader(pipe, probes), probes, sigmas)
    return colour_swap(x0_reader(pipe, probes), probes, target, sigmas)
