"""The perfect generator: renders the world's own image of each prompt into the GenEval layout.

Sample k of prompt i is a scene drawn for the prompt's metadata (lens.world.sampler) from a seed
hashed from (seed, i, k), so reference folders are reproducible and disjoint from training seeds.
`caption_generator` does the same for free text: it draws what a caption literally asks for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
from PIL import Image

from lens.errors import LensError
from lens.eval.layout import sample_path, write_prompt_dir
from lens.eval.prompts import nano_prompts
from lens.resolution import validate_size
from lens.world.background import sample_background
from lens.world.geneval import find_prompt
from lens.world.render import render_scene
from lens.world.sampler import scene_for_metadata
from lens.world.scene import Scene


def reference_seed(seed: int, index: int, k: int) -> int:
    digest = hashlib.sha256(f"nano-eval/{seed}/{index}/{k}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def render_reference(
    out: str,
    prompts: list[dict] | None = None,
    height: int = 64,
    width: int = 64,
    n_samples: int = 4,
    seed: int = 0,
) -> int:
    """Write n_samples reference images per prompt under `out`; returns the number of images."""
    validate_size(height, width)
    if n_samples < 1:
        raise LensError(f"n_samples must be at least 1, got {n_samples}")
    prompts = nano_prompts() if prompts is None else prompts
    for i, metadata in enumerate(prompts):
        write_prompt_dir(out, i, metadata)
        for k in range(n_samples):
            scene = scene_for_metadata(metadata, reference_seed(seed, i, k))
            render_scene(scene, height, width).save(sample_path(out, i, k))
    return len(prompts) * n_samples


def caption_generator(height: int = 64, width: int = 64) -> Callable[[list[str], int], list[Image.Image]]:
    """`generate(texts, seed)` as Nano-Eval takes it: for each text, the world's own image of the
    request it states in the world's prompt grammar (`lens.world.geneval.find_prompt`, e.g. "two red
    circles" anywhere in a sentence), or a bare background when it states none it can draw.

    Not a model: a literal reader, so a rewrite that drops a colour, a count or a relation loses it in
    the image and a faithful one scores 1. The reasoner search uses it to score system prompts on the
    CPU with scores that mean something (`lens reasoner search --generator world`)."""
    validate_size(height, width)

    def generate(texts: list[str], seed: int) -> list[Image.Image]:
        images = []
        for i, text in enumerate(texts):
            scene_seed = reference_seed(seed, i, 0)
            metadata = find_prompt(text)
            try:
                scene = scene_for_metadata(metadata, scene_seed) if metadata else None
            except LensError:  # more objects than a scene holds: nothing it can draw
                scene = None
            if scene is None:
                scene = Scene([], sample_background(np.random.default_rng(scene_seed)))
            images.append(render_scene(scene, height, width))
        return images

    return generate
