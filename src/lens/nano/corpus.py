"""The nano training data, drawn from the shapes world and deterministic by (seed, index).

Item `index` of stream `seed` is the world's scene `sample_seed(seed, index)` (what `lens world`
shards hold), so the text the LM learns and the images the VAE learns are the denoiser's own data.
Held-out items start at `VAL_START`, far past any training index.

Caption mixture (what the denoiser will be conditioned on): the world's dense captions in both
styles (compact, what the nano denoiser trains on and the reasoner writes, and verbose), its brief
alt-text lines, and GenEval-style short prompts ("a photo of two red circles", the Nano-Eval
phrasing, drawn at random rather than taken from the fixed suite).
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import torch
from torch import Tensor

from lens.errors import LensError
from lens.text.chat import HarmonyTemplate
from lens.world.captions import brief_caption, dense_caption
from lens.world.geneval import TAGS, phrase, random_metadata
from lens.world.render import render_scene
from lens.world.sampler import sample_scene
from lens.world.shards import sample_seed

VAL_START = 2**31  # held-out items: indices from here on
CAPTION_KINDS = ("compact", "verbose", "brief", "prompt")
CAPTION_WEIGHTS = (0.4, 0.2, 0.2, 0.2)
TEMPLATE_SHARE = 0.1  # tokenizer corpus: one Harmony rendering per ten captions, so its words merge too
_FIRST_DATE = dt.date(2024, 1, 1)
_DATE_SPAN_DAYS = 12 * 365  # the LM sees "Current date" lines from 2024 to 2035
_SPECIAL = re.compile(r"<\|[a-z_0-9]+\|>")


def _rng(seed: int, index: int, salt: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), salt])


def caption(seed: int, index: int) -> str:
    """Item `index`'s caption: compact or verbose dense, brief, or a short GenEval-style prompt
    (40/20/20/20 by seed)."""
    rng = _rng(seed, index, 1)
    kind = CAPTION_KINDS[rng.choice(len(CAPTION_KINDS), p=CAPTION_WEIGHTS)]
    if kind == "prompt":
        return phrase(random_metadata(TAGS[rng.integers(len(TAGS))], rng))
    scene = sample_scene(sample_seed(seed, index))
    return brief_caption(scene) if kind == "brief" else dense_caption(scene, style=kind)


def captions(seed: int, start: int, n: int) -> list[str]:
    """Captions of items start .. start + n - 1."""
    return [caption(seed, i) for i in range(start, start + n)]


def random_date(rng: np.random.Generator) -> str:
    """A 'YYYY-MM-DD' between 2024 and 2035: inference fills in today's date, so the LM sees many."""
    return (_FIRST_DATE + dt.timedelta(days=int(rng.integers(_DATE_SPAN_DAYS)))).isoformat()


def lm_text(seed: int, index: int) -> str:
    """Item `index`'s caption wrapped in the Harmony template, with a random date: what the LM trains on."""
    return HarmonyTemplate(random_date(_rng(seed, index, 2))).render(caption(seed, index))


def tokenizer_corpus(seed: int, n: int) -> list[str]:
    """n captions plus the text pieces of Harmony renderings (special tokens removed: they are added
    to the tokenizer whole, never learnt as merges)."""
    if n < 1:
        raise LensError(f"the tokenizer corpus needs at least one caption, got n={n}.")
    texts = captions(seed, 0, n)
    for i in range(max(1, int(n * TEMPLATE_SHARE))):
        texts += [p for p in _SPECIAL.split(lm_text(seed, i)) if p]
    return texts


def world_images(seed: int, start: int, n: int, height: int, width: int) -> Tensor:
    """Items start .. start + n - 1 rendered at height x width: (n, 3, H, W) float32 in [-1, 1]."""
    images = [
        np.asarray(render_scene(sample_scene(sample_seed(seed, i)), height, width))
        for i in range(start, start + n)
    ]
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # (n, 3, H, W) uint8
    return pixels.float() / 127.5 - 1.0


def crops(
    seed: int, start: int, n: int, sizes: tuple[int, ...], crop: int, object_share: float = 0.0
) -> Tensor:
    """Items rendered at a size drawn from `sizes` (square) and cut to a crop x crop window:
    (n, 3, crop, crop) in [-1, 1]. Larger renders show the shapes at the scale of larger images.

    With probability `object_share` the window is centred on one of the scene's objects, else placed
    at random. Backgrounds are neutral and cover most of a scene, so colour (hue) is a small share of
    the pixel variance of random windows, and an autoencoder learns it last; object windows raise it.
    """
    if any(s < crop for s in sizes):
        raise LensError(f"every render size in {sizes} must be at least the crop size {crop}.")
    out = []
    for i in range(start, start + n):
        rng = _rng(seed, i, 3)
        size = int(sizes[rng.integers(len(sizes))])
        scene = sample_scene(sample_seed(seed, i))
        image = np.asarray(render_scene(scene, size, size))  # (size, size, 3) uint8
        if rng.random() < object_share:
            obj = scene.objects[rng.integers(len(scene.objects))]
            top, left = (int(np.clip(round(c * size - crop / 2), 0, size - crop)) for c in (obj.y, obj.x))
        else:
            top, left = (int(rng.integers(size - crop + 1)) for _ in range(2))
        out.append(torch.from_numpy(image[top : top + crop, left : left + crop].copy()))
    pixels = torch.stack(out).permute(0, 3, 1, 2)  # (n, 3, crop, crop) uint8
    return pixels.float() / 127.5 - 1.0
