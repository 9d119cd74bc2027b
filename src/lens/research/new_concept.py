"""A visual concept the shapes world does not have (a crescent), for LoRA fine-tuning demos.

`lens nano concept-data OUT` writes world scenes in which one object is a crescent, captioned in
the world's own words with "crescent" for the shape, as a world shard whose captions keep their
grounding spans (what a grounded model such as Lens-Nano v2 trains on): the DATA `lens finetune`
takes. `lens nano concept-eval` prompts a held-out one-crescent scene's grounded caption (or "a
photo of a {colour} crescent") for every chromatic colour and a few seeds and reads each image with
Nano-Eval's segmentation and a shape classifier that knows the world's eight shapes *and* the crescent
(prototypes drawn the way `lens.eval.shapes` draws the world's): the share of images whose main
object is a crescent, and of those in the named colour, before and after a fine-tune.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from lens.data.shards import ShardWriter
from lens.errors import LensError
from lens.text.grounding import GroundedPrompt
from lens.world.captions import grounded_brief_caption
from lens.world.compact import grounded_compact_caption
from lens.world.render import render_scene
from lens.world.sampler import build_scene
from lens.world.shards import SHARD_PATTERN, WorldSample, sample_members
from lens.world.vocab import CHROMATIC, SHAPES, article

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


def renamed(prompt: GroundedPrompt) -> GroundedPrompt:
    """A world caption with "crescent" for "circle", its grounding spans moved with the text."""
    text, shift = str(prompt), len(NAME) - len("circle")

    def at(i: int) -> int:
        return i + shift * text[:i].count("circle")

    return GroundedPrompt(text.replace("circle", NAME), [(at(a), at(b), x, y) for a, b, x, y in prompt.spans])


def concept_sample(seed: int, size: int = 128) -> WorldSample:
    """One world scene whose first object is a crescent (sometimes beside one other shape), with the
    world's grounded captions of the same scene drawn with a circle, renamed: a compact dense
    caption, or (one-object scenes, 40 %) the brief one, and the brief one."""
    rng = np.random.default_rng([seed, 17])
    specs = [{"shape": "circle"}]
    if rng.random() < 0.3:
        specs.append({"shape": OTHERS[rng.integers(len(OTHERS))]})
    scene = build_scene(specs, seed)
    brief = renamed(grounded_brief_caption(scene, seed))
    dense = (
        brief if len(specs) == 1 and rng.random() < 0.4 else renamed(grounded_compact_caption(scene, seed))
    )
    # the world draws everything but the stand-in circle; the crescent goes where it was (objects
    # never overlap, so the order does not matter)
    rest = np.asarray(
        render_scene(dataclasses.replace(scene, objects=scene.objects[1:]), size, size), np.float32
    )
    obj = scene.objects[0]
    cov = crescent_coverage(obj.x * size, obj.y * size, obj.radius * size, size, size)  # (H, W)
    pixels = rest + cov[..., None] * (np.asarray(obj.rgb, np.float32) - rest)
    image = Image.fromarray(np.round(pixels).astype(np.uint8), "RGB")
    return WorldSample(key=f"{seed:08d}", image=image, caption=dense, brief=brief, scene=scene)


def write_concept_shards(out: str | Path, n: int = 48, seed: int = 0, size: int = 128) -> Path:
    """`n` crescent scenes as one world-format shard, OUT/world-000000.tar (png, the dense and brief
    captions, the scene json with the captions' grounding), the DATA `lens finetune` takes. The
    scene json names the crescent's stand-in, a circle; training reads only captions and spans."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise LensError(f"{out} is not empty; pick an empty folder for the crescent shards")
    with ShardWriter(out / (SHARD_PATTERN % 0)) as sink:
        for i in tqdm(range(n), desc="crescent scenes", unit="img"):
            sink.write(sample_members(concept_sample(seed * 100_000 + i, size)))
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


EVAL_SEED = 10**7  # scenes of the eval's captions: far from those of `write_concept_shards`


def concept_prompts(seeds: int = 2, grounded: bool = True) -> list[tuple[str, str]]:
    """(colour, prompt) for every chromatic colour x `seeds`: a held-out one-crescent scene's grounded
    compact caption (what the world's reasoner would write, had it the word), or with `grounded`
    off "a photo of a {colour} crescent" (a plain prompt, all of it at the centre)."""
    out = []
    for c, colour in enumerate(CHROMATIC):
        for k in range(seeds):
            seed = EVAL_SEED + 100 * c + k
            scene = build_scene([{"shape": "circle", "color": colour}], seed)
            plain = f"a photo of {article(colour)} {colour} {NAME}"
            out.append((colour, renamed(grounded_compact_caption(scene, seed)) if grounded else plain))
    return out


def concept_eval(pipe, seeds: int = 2, steps=None, guidance=None, grounded: bool = True) -> dict:
    """Generate `concept_prompts` and read each image: the share whose main object is a crescent, and
    a crescent of the named colour."""
    import torch

    kwargs = {
        k: v for k, v in {"num_inference_steps": steps, "guidance_scale": guidance}.items() if v is not None
    }
    rows, images = [], []
    for i, (colour, prompt) in enumerate(
        tqdm(concept_prompts(seeds, grounded), desc="concept eval", unit="img")
    ):
        seed = i % seeds
        image = pipe(prompt, generator=torch.Generator().manual_seed(seed), **kwargs).images[0]
        read = read_main_object(image)
        shape, found = read if read else (None, None)
        rows.append({"prompt": str(prompt), "asked": colour, "seed": seed, "shape": shape, "colour": found})
        images.append(image)
    n = len(rows)
    crescents = sum(r["shape"] == NAME for r in rows)
    right = sum(r["shape"] == NAME and r["asked"] == r["colour"] for r in rows)
    return {"images": images, "rows": rows, "crescent": crescents / n, "crescent_and_colour": right / n}


def concept_grid(images: list[Image.Image], seeds: int) -> Image.Image:
    """`concept_eval`'s images (colour-major) as one row per seed, one column per colour."""
    w, h = images[0].size
    columns = len(images) // seeds
    grid = Image.new("RGB", (w * columns, h * seeds))
    for i, image in enumerate(images):
        grid.paste(image, ((i // seeds) * w, (i % seeds) * h))
    return grid
