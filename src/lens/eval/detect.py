"""The Nano-Eval detector: image -> detections (class, colour, box, confidence), GenEval's inputs.

It plays the part of GenEval's Mask2Former + CLIP colour classifier for this world: segmentation
against the background (segment.py), a shape class from geometric features (shapes.py) and a colour
name from the region's median CIELAB colour (colors.py). Everything is deterministic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from lens.errors import LensError
from lens.eval.segment import segment
from lens.eval.shapes import classify

MAX_SIDE = 512  # larger images are box-downscaled first; the world is legible far below this
PURITY_FULL = 0.6  # a region whose colour is this uniform keeps its full confidence
# A background that the border fits within BG_CLEAN delta E is trusted; by BG_MESSY (colour mush,
# noise) nothing in the image counts as an object.
BG_CLEAN, BG_MESSY = 6.0, 18.0


@dataclass
class Detection:
    cls: str
    color: str
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the input image
    confidence: float
    area: int  # pixels, at analysis resolution

    def to_dict(self) -> dict:
        return asdict(self)


def _as_array(image: Image.Image | np.ndarray) -> tuple[np.ndarray, float]:
    """uint8 (H, W, 3) at most MAX_SIDE per side, and the scale back to the input's pixels."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise LensError(f"expected an (H, W, 3) RGB array, got shape {image.shape}")
        image = Image.fromarray(np.asarray(image[..., :3], np.uint8))
    image = image.convert("RGB")
    w, h = image.size
    if min(w, h) < 16:
        raise LensError(f"image {w}x{h} is too small to analyse; generate at least 16 px per side")
    scale = max(w, h) / MAX_SIDE
    if scale > 1:
        image = image.resize((round(w / scale), round(h / scale)), Image.Resampling.BOX)
    return np.asarray(image), max(scale, 1.0)


def detect(image: Image.Image | np.ndarray) -> list[Detection]:
    """All detections in an image, most confident first."""
    arr, scale = _as_array(image)
    seg = segment(arr)
    trust = float(np.clip((BG_MESSY - seg.border_de) / (BG_MESSY - BG_CLEAN), 0.0, 1.0))
    out = []
    for region in seg.regions:
        guess = classify(region.mask)
        h, w = region.mask.shape
        conf = guess.confidence * min(region.purity / PURITY_FULL, 1.0) * trust
        box = (region.left, region.top, region.left + w, region.top + h)
        out.append(
            Detection(
                cls=guess.shape,
                color=region.color,
                bbox=tuple(float(v * scale) for v in box),
                confidence=round(float(conf), 4),
                area=int(region.mask.sum()),
            )
        )
    return sorted(out, key=lambda d: -d.confidence)
