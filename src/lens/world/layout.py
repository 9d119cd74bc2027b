"""Placement: non-overlapping positions for shapes, optionally obeying "A left of B"-style constraints.

Positions are normalised, radii are fractions of the shorter side. Checking overlap and margins in
the unit square is enough for every aspect ratio: stretching the frame only moves shapes apart along
the longer axis (distances in pixels are at least those of the square frame) and never pushes a shape
out (a radius spans a smaller fraction of the longer side).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lens.world.relations import robust_relations
from lens.world.scene import SceneObject

MARGIN = 0.03  # free border around each shape, fraction of the shorter side
GAP = 0.05  # least free space between two shapes' bounding circles
LAYOUTS = 30  # fresh starts before giving up (the caller then shrinks a shape)
TRIES = 60  # candidate positions per object within one start

Constraint = tuple[int, str, int]  # object i must stand in relation rel to object j


def _free(x: float, y: float, r: float, placed: Sequence[tuple[float, float, float]]) -> bool:
    if not (r + MARGIN <= x <= 1 - r - MARGIN and r + MARGIN <= y <= 1 - r - MARGIN):
        return False
    return all(np.hypot(x - px, y - py) >= r + pr + GAP for px, py, pr in placed)


def _near(
    rng: np.random.Generator, rel: str, tx: float, ty: float, r: float, tr: float
) -> tuple[float, float]:
    """A candidate centre for a shape of radius r standing in `rel` to a target at (tx, ty)."""
    lo = r + tr + GAP
    dist = rng.uniform(lo, lo + 0.35)
    side = rng.uniform(-0.25, 0.25) * dist  # a little drift on the other axis
    if rel == "left of":
        return tx - dist, ty + side
    if rel == "right of":
        return tx + dist, ty + side
    if rel == "above":
        return tx + side, ty - dist
    return tx + side, ty + dist  # below


def place(
    radii: Sequence[float],
    rng: np.random.Generator,
    constraints: Sequence[Constraint] = (),
    shapes: Sequence[str] | None = None,
) -> list[tuple[float, float]] | None:
    """Centres for shapes of the given radii (normalised), or None when no layout was found.

    Each constrained object is placed after its target; with `shapes` given, a constraint is only
    accepted when the relation holds by GenEval's rule at every aspect (relations.robust_relations).
    Returns None when LAYOUTS fresh starts all fail.
    """
    wants = {i: (rel, j) for i, rel, j in constraints}
    order = sorted(range(len(radii)), key=lambda i: i in wants)  # targets first
    for _ in range(LAYOUTS):
        pos: dict[int, tuple[float, float]] = {}
        for i in order:
            for _ in range(TRIES):
                if i in wants and wants[i][1] in pos:
                    rel, j = wants[i]
                    x, y = _near(rng, rel, *pos[j], radii[i], radii[j])
                else:
                    x, y = rng.uniform(radii[i] + MARGIN, 1 - radii[i] - MARGIN, size=2).tolist()
                placed = [(*pos[k], radii[k]) for k in pos]
                if _free(x, y, radii[i], placed) and _holds(i, x, y, wants, pos, radii, shapes):
                    pos[i] = (float(x), float(y))
                    break
            else:
                break
        if len(pos) == len(radii):
            return [pos[i] for i in range(len(radii))]
    return None


def _holds(i, x, y, wants, pos, radii, shapes) -> bool:
    if i not in wants or shapes is None:
        return True
    rel, j = wants[i]
    a = SceneObject(shapes[i], "red", "small", x, y, radii[i], (0, 0, 0))
    b = SceneObject(shapes[j], "red", "small", *pos[j], radii[j], (0, 0, 0))
    return rel in robust_relations(a, b)
