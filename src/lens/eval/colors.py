"""Colour naming over GenEval's ten colours: nearest prototype in CIELAB.

GenEval asks CLIP which of ten colour names fits a crop best; here each name has a few sRGB
prototypes (a saturated, a dark and a light variant, as a generator might paint them) and a region is
named by its median Lab colour's nearest prototype. Deterministic, and exact on the world's palette.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from skimage.color import rgb2lab

COLOR_NAMES = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
PROTOTYPES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "red": ((214, 38, 38), (160, 20, 24), (240, 70, 60)),
    "orange": ((245, 136, 24), (225, 105, 20), (250, 165, 80)),
    "yellow": ((245, 212, 30), (225, 200, 70), (250, 235, 110)),
    "green": ((44, 160, 64), (24, 110, 40), (110, 200, 100), (150, 200, 40)),
    "blue": ((36, 84, 214), (24, 44, 150), (90, 150, 230), (40, 150, 200)),
    "purple": ((128, 52, 172), (84, 30, 120), (170, 110, 210)),
    "pink": ((244, 134, 190), (250, 180, 205), (225, 80, 150)),
    "brown": ((128, 76, 36), (92, 56, 30), (165, 110, 60)),
    "black": ((22, 22, 22), (55, 55, 55)),
    "white": ((246, 246, 246), (215, 215, 215)),
}


@cache
def _table() -> tuple[np.ndarray, np.ndarray]:
    """(P, 3) prototype Lab colours and (P,) index of their name in COLOR_NAMES."""
    rgb, names = [], []
    for k, name in enumerate(COLOR_NAMES):
        for c in PROTOTYPES[name]:
            rgb.append(c)
            names.append(k)
    lab = rgb2lab(np.asarray(rgb, np.float64)[None] / 255.0)[0]
    return lab.astype(np.float32), np.asarray(names)


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 or 0..255 floats -> (..., 3) float32 Lab."""
    return rgb2lab(np.asarray(rgb, np.float64) / 255.0).astype(np.float32)


def label_pixels(lab: np.ndarray) -> np.ndarray:
    """(..., 3) Lab -> (...) index into COLOR_NAMES of the nearest prototype."""
    protos, names = _table()
    d = ((lab[..., None, :] - protos) ** 2).sum(-1)  # (..., P)
    return names[d.argmin(-1)]


def name_color(lab: np.ndarray) -> str:
    """Name of one Lab colour (3,)."""
    return COLOR_NAMES[int(label_pixels(np.asarray(lab, np.float32)[None])[0])]
