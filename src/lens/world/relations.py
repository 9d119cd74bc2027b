"""Spatial relations: GenEval's box rule, and the relations a scene states in its graph and captions.

`relative_position` is GenEval's rule to the letter (evaluate_images.py): box centres and sizes, the
offset shrunk towards zero by 0.1 x the summed sizes on each axis, then thresholded at 0.5 of the
original offset's length. A scene only claims a relation that holds under that rule at a tall, a
square and a wide aspect ratio, because the same scene renders at all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lens.world.scene import Relation, SceneObject
from lens.world.shapes import unit_bbox

POSITION_THRESHOLD = 0.1
ASPECTS = ((128, 64), (64, 64), (64, 128))  # (height, width): tall, square, wide
NEAR_GAP = 0.12  # edge gap (fraction of the shorter side) under which two shapes are "next to" each other

Box = Sequence[float]  # (x1, y1, x2, y2) in pixels, y down


def relative_position(box_a: Box, box_b: Box) -> set[str]:
    """Position of A relative to B: a subset of {left of, right of, above, below} (GenEval's rule)."""
    boxes = np.asarray([box_a[:4], box_b[:4]], dtype=np.float64).reshape(2, 2, 2)
    center_a, center_b = boxes.mean(axis=-2)
    dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    rels = set()
    if dx < -0.5:
        rels.add("left of")
    if dx > 0.5:
        rels.add("right of")
    if dy < -0.5:
        rels.add("above")
    if dy > 0.5:
        rels.add("below")
    return rels


def object_box(obj: SceneObject, height: int, width: int) -> tuple[float, float, float, float]:
    """The pixel box (x1, y1, x2, y2) of an object rendered at height x width."""
    r = obj.radius * min(height, width)
    x0, y0, x1, y1 = unit_bbox(obj.shape)
    cx, cy = obj.x * width, obj.y * height
    return (cx + x0 * r, cy + y0 * r, cx + x1 * r, cy + y1 * r)


def robust_relations(a: SceneObject, b: SceneObject) -> set[str]:
    """GenEval relations of A to B that hold at every aspect in ASPECTS."""
    out: set[str] | None = None
    for h, w in ASPECTS:
        rels = relative_position(object_box(a, h, w), object_box(b, h, w))
        out = rels if out is None else out & rels
    return out or set()


def edge_gap(a: SceneObject, b: SceneObject) -> float:
    """Distance between the shapes' bounding circles, as a fraction of the shorter side (at 1:1)."""
    return float(np.hypot(a.x - b.x, a.y - b.y)) - a.radius - b.radius


def scene_relations(objects: Sequence[SceneObject]) -> list[Relation]:
    """Every robust relation between each pair (i < j), stated once from i to j."""
    out = []
    for i in range(len(objects)):
        for j in range(i + 1, len(objects)):
            for rel in sorted(robust_relations(objects[i], objects[j])):
                out.append(Relation(i, rel, j))
            if edge_gap(objects[i], objects[j]) <= NEAR_GAP:
                out.append(Relation(i, "next to", j))
    return out
