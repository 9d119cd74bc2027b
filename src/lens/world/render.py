"""Rendering: one scene graph to an anti-aliased RGB image of any height x width (multiples of 16)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from lens.errors import LensError
from lens.resolution import validate_size
from lens.world.background import render_background
from lens.world.scene import Scene
from lens.world.shapes import coverage


def parse_size(text: str) -> tuple[int, int]:
    """'64x96' -> (64, 96): height x width, each a multiple of 16."""
    try:
        h, w = (int(p) for p in text.lower().split("x"))
    except ValueError as err:
        raise LensError(f"size {text!r} is not HEIGHTxWIDTH; write it like 64x64 or 64x96") from err
    return validate_size(h, w)


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
