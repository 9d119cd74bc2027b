"""Rendering: one scene graph to an anti-aliased RGB image of any height x width (multiples of 16)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from lens.resolution import validate_size
from lens.world.background import render_background
from lens.world.scene import Scene
from lens.world.shapes import coverage


def render_scene(scene: Scene, height: int = 64, width: int = 64) -> Image.Image:
    """The scene at height x width: background, then each object composited with its coverage mask."""
    validate_size(height, width)
    img = render_background(scene.background, height, width)  # (H, W, 3) 0..255
    side = min(height, width)
    for obj in scene.objects:
        cov, top, left = coverage(obj.shape, obj.x * width, obj.y * height, obj.radius * side, height, width)
        if cov.size == 0:
            continue
        patch = img[top : top + cov.shape[0], left : left + cov.shape[1]]
        patch += cov[..., None] * (np.asarray(obj.rgb, np.float32) - patch)
    return Image.fromarray(np.round(img).astype(np.uint8), "RGB")
