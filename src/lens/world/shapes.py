"""Shape outlines as polygons of unit circumradius, and anti-aliased coverage masks drawn from them.

Each outline is centred on the shape's circumcentre with y growing downwards; every vertex lies
within distance 1 of the centre, so a shape of radius r never leaves the circle of radius r (the
placement code relies on that to keep shapes apart and inside the frame).
"""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image, ImageDraw

from lens.world.vocab import check_shape

SUPERSAMPLE = 4  # coverage masks are drawn at 4x and box-filtered down: 16 samples per pixel
HOLES = {"ring": 0.5}  # shapes with a round hole: its radius as a fraction of the outer radius


def _regular(n: int, start_deg: float) -> np.ndarray:
    a = np.deg2rad(start_deg + 360.0 * np.arange(n) / n)
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    a = np.deg2rad(-90.0 + 180.0 * np.arange(2 * points) / points)
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _cross(half_width: float = 0.34) -> np.ndarray:
    arm = 1.0 / np.hypot(1.0, half_width)  # arm tip corners sit on the unit circle
    w = half_width * arm
    return np.array(
        [
            (-w, -arm),
            (w, -arm),
            (w, -w),
            (arm, -w),
            (arm, w),
            (w, w),
            (w, arm),
            (-w, arm),
            (-w, w),
            (-arm, w),
            (-arm, -w),
            (-w, -w),
        ]
    )


def _heart(n: int = 96) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], axis=1)
    pts -= (pts.max(axis=0) + pts.min(axis=0)) / 2  # centre the bounding box
    return pts / np.hypot(pts[:, 0], pts[:, 1]).max()


@cache
def outline(shape: str) -> np.ndarray:
    """(N, 2) polygon of unit circumradius, y down."""
    check_shape(shape)
    if shape == "circle":
        pts = _regular(128, 0.0)
    elif shape == "square":
        pts = _regular(4, 45.0)
    elif shape == "triangle":
        pts = _regular(3, -90.0)
    elif shape == "star":
        pts = _star()
    elif shape == "ring":
        pts = _regular(128, 0.0)  # the outer edge; the hole is cut in `coverage`
    elif shape == "diamond":
        pts = np.array([(0.0, -1.0), (0.7, 0.0), (0.0, 1.0), (-0.7, 0.0)])
    elif shape == "cross":
        pts = _cross()
    else:
        pts = _heart()
    pts.setflags(write=False)
    return pts


@cache
def unit_bbox(shape: str) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the outline of unit radius, relative to the centre."""
    pts = outline(shape)
    return (*pts.min(axis=0).tolist(), *pts.max(axis=0).tolist())


def coverage(
    shape: str, cx: float, cy: float, r: float, height: int, width: int
) -> tuple[np.ndarray, int, int]:
    """Anti-aliased coverage (0..1) of a shape of radius r px centred at (cx, cy) px.

    Returns (patch, top, left): the patch covers only the shape's pixel window, which keeps drawing
    cheap at any image size. Pixel (i, j) spans [j, j+1) x [i, i+1).
    """
    x0 = max(int(np.floor(cx - r)) - 1, 0)
    y0 = max(int(np.floor(cy - r)) - 1, 0)
    x1 = min(int(np.ceil(cx + r)) + 1, width)
    y1 = min(int(np.ceil(cy + r)) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0), np.float32), y0, x0
    s = SUPERSAMPLE
    canvas = Image.new("L", ((x1 - x0) * s, (y1 - y0) * s), 0)
    pts = (outline(shape) * r + (cx - x0, cy - y0)) * s
    draw = ImageDraw.Draw(canvas)
    draw.polygon([tuple(p) for p in pts.tolist()], fill=255)
    if shape in HOLES:
        hole = (outline("circle") * r * HOLES[shape] + (cx - x0, cy - y0)) * s
        draw.polygon([tuple(p) for p in hole.tolist()], fill=0)
    small = canvas.resize((x1 - x0, y1 - y0), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0, y0, x0
