"""The perfect generator: renders the world's own image of each prompt into the GenEval layout.

Sample k of prompt i is a scene drawn for the prompt's metadata (lens.world.sampler) from a seed
hashed from (seed, i, k), so reference folders are reproducible and disjoint from training seeds.
"""

from __future__ import annotations

import hashlib

from lens.errors import LensError
from lens.eval.layout import sample_path, write_prompt_dir
from lens.eval.prompts import nano_prompts
from lens.resolution import validate_size
from lens.world.render import render_scene
from lens.world.sampler import scene_for_metadata


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
