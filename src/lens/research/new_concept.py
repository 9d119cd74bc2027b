"""A visual concept the shapes world does not have (a crescent), for LoRA fine-tuning demos.

`lens nano concept-data OUT` writes a folder of world scenes in which one object is a crescent,
captioned in the world's own words with "crescent" for the shape (kohya's layout: NAME.png +
NAME.txt), the input `lens finetune` takes. `lens nano concept-eval` generates "a photo of a
{colour} crescent" for every chromatic colour and a few seeds and reads each image with Nano-Eval's
segmentation and a shape classifier that knows the world's eight shapes *and* the crescent
(prototypes drawn the way `lens.eval.shapes` draws the world's): the share of images whose main
object is a crescent, and of those in the named colour, before and after a fine-tune.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from lens.world.vocab import CHROMATIC, SHAPES

NAME = "crescent"
HOLE = (0.42, -0.12, 0.78)  # the cut disk: centre offset (x, y) and radius, in outer radii
SUPERSAMPLE = 4
OTHERS = tuple(s for s in SHAPES if s not in ("circle", "ring"))  # a second object, never round


def crescent_coverage(cx: float, cy: float, r: float, height: int, width: int) -> np.ndarray:
    """(height, width) anti-aliased coverage (0..1) of a crescent of outer radius r px at (cx, cy):
    a disk with an offset disk cut out, opening to the upper right."""
    s = SUPERSAMPLE
    canvas = Image.new("L", (width * s, height * s), 0)
    draw = ImageDraw.Draw(canvas)
    draw.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=255)
    hx, hy, hr = cx + HOLE[0] * r, cy + HOLE[1] * r, HOLE[2] * r
    draw.ellipse([(hx - hr) * s, (hy - hr) * s, (hx + hr) * s, (hy + hr) * s], fill=0)
    return np.asarray(canvas.resize((width, height), Image.Resampling.BOX), np.float32) / 255.0


def concept_scene(seed: int, size: int = 128) -> tuple[Image.Image, str]:
    """One world scene whose first object is a crescent (sometimes with one other shape), and its
    caption: the world's compact or brief caption of the same scene with a circle in its place."""
    from lens.world.background import render_background
    from lens.world.captions import brief_caption
    from lens.world.compact import compact_caption
    from lens.world.sampler import build_scene

    rng = np.random.default_rng([seed, 17])
    specs = [{"shape": "circle"}]
    if rng.random() < 0.3:
        specs.append({"shape": OTHERS[rng.integers(len(OTHERS))]})
    scene = build_scene(specs, seed)
    caption = (
        compact_caption(scene, seed) if len(specs) > 1 or rng.random() < 0.6 else brief_caption(scene, seed)
    )
    caption = caption.replace("circles", NAME + "s").replace("circle", NAME)
    pixels = render_background(scene.background, size, size)  # (H, W, 3) 0..255
    for i, obj in enumerate(scene.objects):
        if i == 0:
            cov = crescent_coverage(obj.x * size, obj.y * size, obj.radius * size, size, size)
        else:
            cov = render_object(obj, size)
        pixels += cov[..., None] * (np.asarray(obj.rgb, np.float32) - pixels)
    return Image.fromarray(np.round(pixels).astype(np.uint8), "RGB"), caption


def render_object(obj, size: int) -> np.ndarray:
    """(size, size) coverage of a world object, as `lens.world.render` draws it."""
    from lens.world.shapes import coverage

    cov, top, left = coverage(obj.shape, obj.x * size, obj.y * size, obj.radius * size, size, size)
    full = np.zeros((size, size), np.float32)
    full[top : top + cov.shape[0], left : left + cov.shape[1]] = cov
    return full


def write_concept_folder(out: str | Path, n: int = 48, seed: int = 0, size: int = 128) -> Path:
    """`n` captioned crescent scenes as OUT/NNNN.png + OUT/NNNN.txt."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(n), desc="crescent scenes", unit="img"):
        image, caption = concept_scene(seed * 100_000 + i, size)
        image.save(out / f"{i:04d}.png")
        (out / f"{i:04d}.txt").write_text(caption + "\n")
    return out


@cache
def _prototypes() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from lens.eval.shapes import prototypes, shape_prototypes

    world, labels = prototypes()
    ours = shape_prototypes(lambda cx, cy, r, size: crescent_coverage(cx, cy, r, size, size))
    names = (*SHAPES, NAME)
    return np.concatenate([world, ours]), np.concatenate([labels, np.full(len(ours), len(SHAPES))]), names


def read_main_object(image: Image.Image) -> tuple[str, str] | None:
    """(shape, colour name) of the largest region Nano-Eval's segmentation finds, the shape chosen
    among the world's eight and the crescent; None when it finds no object."""
    from lens.eval.segment import segment
    from lens.eval.shapes import SCALES, features

    regions = segment(np.asarray(image.convert("RGB"))).regions
    if not regions:
        return None
    region = max(regions, key=lambda r: int(r.mask.sum()))
    protos, labels, names = _prototypes()
    d = np.sqrt(((protos - features(region.mask) / SCALES) ** 2).mean(axis=1))
    per_class = [d[labels == k].min() for k in range(len(names))]
    return names[int(np.argmin(per_class))], region.color


def concept_eval(pipe, seeds: int = 2, steps: int | None = None, guidance: float | None = None) -> dict:
    """Generate "a photo of a {colour} crescent" (every chromatic colour x `seeds`) and read each
    image: the share whose main object is a crescent, and a crescent of the named colour."""
    import torch

    rows, images = [], []
    for colour in tqdm(CHROMATIC, desc="concept eval", unit="colour"):
        prompt = f"a photo of a {colour} {NAME}"
        for seed in range(seeds):
            kwargs = {"num_inference_steps": steps, "guidance_scale": guidance}
            kwargs = {k: v for k, v in kwargs.items() if v is not None}
            image = pipe(prompt, generator=torch.Generator().manual_seed(seed), **kwargs).images[0]
            read = read_main_object(image)
            shape, found = read if read else (None, None)
            rows.append({"prompt": prompt, "seed": seed, "shape": shape, "colour": found})
            images.append(image)
    n = len(rows)
    crescents = sum(r["shape"] == NAME for r in rows)
    right = sum(r["shape"] == NAME and r["prompt"].split()[3] == r["colour"] for r in rows)
    return {"images": images, "rows": rows, "crescent": crescents / n, "crescent_and_colour": right / n}


def concept_grid(images: list[Image.Image], seeds: int) -> Image.Image:
    """`concept_eval`'s images (colour-major) as one row per seed, one column per colour."""
    w, h = images[0].size
    columns = len(images) // seeds
    grid = Image.new("RGB", (w * columns, h * seeds))
    for i, image in enumerate(images):
        grid.paste(image, ((i // seeds) * w, (i % seeds) * h))
    return grid
