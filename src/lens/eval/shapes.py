"""Shape classification from geometric features, against prototypes drawn by the world's own renderer.

Features of a region's mask: solidity (area / convex hull), extent (area / box), box aspect,
centroid offsets from the box centre (triangles are bottom-heavy, hearts top-heavy), circularity,
share of enclosed holes, a 4x4 occupancy grid over the box (coarse outline) and the log of the size.
Prototypes are the same features of every shape rasterised at many sizes and sub-pixel offsets, so
pixelation at small sizes is modelled rather than guessed. A region takes the class of its nearest
prototype; confidence falls with the distance to it (a blob unlike any shape scores low) and with a
small margin to the runner-up class.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import ndimage
from skimage.measure import regionprops

from lens.world.shapes import coverage
from lens.world.vocab import SHAPES

GRID = 4
# Per-feature scales: a difference of one scale unit is about as telling in every feature.
SCALES = np.array([0.04, 0.05, 0.07, 0.03, 0.03, 0.08, 0.03] + [0.12] * GRID * GRID + [0.5], np.float32)
N_SCALAR = 7
PROTO_RADII = tuple(float(r) for r in np.geomspace(4.5, 48.0, 16))  # circumradius in pixels
PROTO_OFFSETS = ((0.0, 0.0), (0.25, 0.5), (0.5, 0.25), (0.75, 0.75))
PROTO_BLURS = (0.0, 0.8, 1.3)  # Gaussian sigma in pixels: generators paint softer edges than the renderer
FIT_SIGMA = 3.0  # distance (in scale units, RMS over features) at which the fit term is exp(-0.5)


@dataclass
class ShapeGuess:
    shape: str
    confidence: float
    distance: float
    margin: float


def features(mask: np.ndarray) -> np.ndarray:
    """(h, w) bool mask cropped to its box -> feature vector (float32)."""
    mask = np.asarray(mask, bool)
    props = regionprops(mask.astype(np.uint8))[0]
    h, w = mask.shape
    area = float(props.area)
    cy, cx = props.centroid
    perimeter = max(float(props.perimeter), 1.0)
    scalar = [
        float(props.solidity),
        area / (h * w),
        float(np.log(w / h)),
        (cy + 0.5) / h - 0.5,
        abs((cx + 0.5) / w - 0.5),
        min(4 * np.pi * area / perimeter**2, 1.5),
        (float(props.area_filled) - area) / float(props.area_filled),
    ]
    rows = np.minimum((np.arange(h) + 0.5) * GRID / h, GRID - 1).astype(int)
    cols = np.minimum((np.arange(w) + 0.5) * GRID / w, GRID - 1).astype(int)
    cell = rows[:, None] * GRID + cols[None, :]  # (h, w) cell index
    filled = np.bincount(cell.ravel(), weights=mask.ravel(), minlength=GRID * GRID)
    total = np.bincount(cell.ravel(), minlength=GRID * GRID)
    grid = filled / np.maximum(total, 1)
    return np.asarray(scalar + grid.tolist() + [np.log(np.sqrt(area))], np.float32)


def shape_prototypes(draw) -> np.ndarray:
    """(R * O * B, F) scaled features of one shape at every prototype radius, sub-pixel offset and
    blur; `draw(cx, cy, r, size)` -> its (size, size) coverage (0..1) of radius r px at (cx, cy)."""
    feats = []
    for r in PROTO_RADII:
        for ox, oy in PROTO_OFFSETS:
            size = int(2 * r + 8)
            cov = draw(size / 2 + ox, size / 2 + oy, r, size)
            for sigma in PROTO_BLURS:
                soft = ndimage.gaussian_filter(cov, sigma) if sigma else cov
                mask = soft >= 0.5 * np.percentile(soft[soft > 0.05], 90)  # as segment.py cuts edges
                ys, xs = np.nonzero(mask)
                feats.append(features(mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]))
    return np.stack(feats) / SCALES


@cache
def prototypes() -> tuple[np.ndarray, np.ndarray]:
    """(P, F) scaled prototype features and (P,) shape index, rendered once per process."""
    feats = [
        shape_prototypes(lambda cx, cy, r, size, shape=shape: coverage(shape, cx, cy, r, size, size)[0])
        for shape in SHAPES
    ]
    return np.concatenate(feats), np.repeat(np.arange(len(SHAPES)), [len(f) for f in feats])


def classify(mask: np.ndarray) -> ShapeGuess:
    """Nearest-prototype shape of a cropped mask, with a confidence in 0..1."""
    protos, labels = prototypes()
    f = features(mask) / SCALES
    d = np.sqrt(((protos - f) ** 2).mean(axis=1))  # (P,) RMS distance in scale units
    per_class = np.array([d[labels == k].min() for k in range(len(SHAPES))])
    order = np.argsort(per_class)
    best, second = per_class[order[0]], per_class[order[1]]
    fit = float(np.exp(-0.5 * (best / FIT_SIGMA) ** 2))
    # A near tie between two classes halves the confidence; a runner-up 25% farther away costs nothing.
    ratio = second / max(best, 0.3)
    sure = 0.5 + 0.5 * float(np.clip((ratio - 1.0) / 0.25, 0.0, 1.0))
    return ShapeGuess(SHAPES[int(order[0])], fit * sure, float(best), float(second - best))
