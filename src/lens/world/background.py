"""Backgrounds: plain, gradient or faintly textured, always near-neutral so objects segment by colour.

Light backgrounds carry every colour but white; dark ones every colour but black; mid-grey ones
(rarer) carry all, so black and white objects can share a scene. Patterns are laid
out in normalised coordinates (periods are fractions of the shorter side), so a background looks the
same at any aspect ratio, and their amplitude stays far below the contrast of any object.
"""

from __future__ import annotations

import numpy as np

from lens.errors import LensError
from lens.world.scene import Background

LIGHT = {
    "white": (244, 244, 242),
    "light grey": (212, 212, 212),
    "pale beige": (232, 224, 208),
    "cream": (240, 235, 220),
    "pale blue-grey": (214, 220, 228),
    "silver grey": (192, 194, 196),
}
DARK = {
    "charcoal": (46, 46, 48),
    "dark grey": (68, 68, 68),
    "dark slate": (42, 48, 58),
    "near-black": (24, 24, 26),
    "deep taupe": (60, 54, 50),
}
MID = {"medium grey": (128, 128, 128), "stone grey": (140, 136, 130)}  # shows black and white alike
PALETTES = {"light": LIGHT, "dark": DARK, "mid": MID}
TONE_WEIGHTS = {"light": 0.6, "dark": 0.3, "mid": 0.1}
KINDS = ("plain", "gradient", "texture")
DIRECTIONS = ("vertical", "horizontal", "diagonal")
PATTERNS = ("stripes", "checker", "speckle")
PATTERN_AMPLITUDE = 7.0  # peak deviation in 8-bit levels
STRIPE_PERIOD = 0.09  # fraction of the shorter side
CHECKER_CELL = 0.125


def sample_background(rng: np.random.Generator, tone: str | None = None) -> Background:
    """A random background; `tone` ('light' / 'dark' / 'mid') is forced when the objects need it."""
    if tone is None:
        tone = str(rng.choice(list(TONE_WEIGHTS), p=list(TONE_WEIGHTS.values())))
    if tone not in PALETTES:
        raise LensError(f"background tone must be one of {', '.join(PALETTES)}, got {tone!r}")
    palette = PALETTES[tone]
    names = list(palette)
    name = names[rng.integers(len(names))]
    kind = KINDS[rng.integers(len(KINDS))]
    bg = Background(kind=kind, tone=tone, name=name, rgb=palette[name])
    if kind == "gradient":
        others = [n for n in names if n != name]
        bg.name2 = others[rng.integers(len(others))]
        bg.rgb2 = palette[bg.name2]
        bg.direction = DIRECTIONS[rng.integers(len(DIRECTIONS))]
    elif kind == "texture":
        bg.pattern = PATTERNS[rng.integers(len(PATTERNS))]
        bg.pattern_seed = int(rng.integers(2**31))
    return bg


def render_background(bg: Background, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 image in 0..255."""
    v = (np.arange(height, dtype=np.float32) + 0.5) / height  # (H,)
    u = (np.arange(width, dtype=np.float32) + 0.5) / width  # (W,)
    base = np.asarray(bg.rgb, np.float32)
    img = np.broadcast_to(base, (height, width, 3)).astype(np.float32)
    if bg.kind == "gradient":
        if bg.direction == "vertical":
            t = np.broadcast_to(v[:, None], (height, width))
        elif bg.direction == "horizontal":
            t = np.broadcast_to(u[None, :], (height, width))
        else:
            t = (v[:, None] + u[None, :]) / 2  # (H, W)
        img = base + t[..., None] * (np.asarray(bg.rgb2, np.float32) - base)
    elif bg.kind == "texture":
        img = img + PATTERN_AMPLITUDE * _pattern(bg, height, width)[..., None]
    return np.clip(img, 0, 255)


def _pattern(bg: Background, height: int, width: int) -> np.ndarray:
    """(H, W) pattern in -1..1, in units of the shorter side."""
    side = min(height, width)
    yy = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / side
    xx = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / side
    if bg.pattern == "stripes":
        return np.sin(2 * np.pi * (xx + yy) / (STRIPE_PERIOD * np.sqrt(2))).astype(np.float32)
    if bg.pattern == "checker":
        cells = np.floor(xx / CHECKER_CELL) + np.floor(yy / CHECKER_CELL)
        return np.where(cells % 2 == 0, 1.0, -1.0).astype(np.float32)
    # speckle: a seeded 12x12 grid of values, bilinearly upsampled in normalised coordinates.
    grid = np.random.default_rng(bg.pattern_seed).uniform(-1, 1, (12, 12)).astype(np.float32)
    gy = np.clip((np.arange(height) + 0.5) / height * 11, 0, 11)
    gx = np.clip((np.arange(width) + 0.5) / width * 11, 0, 11)
    y0, x0 = np.minimum(gy.astype(int), 10), np.minimum(gx.astype(int), 10)
    fy, fx = (gy - y0)[:, None], (gx - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bot = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)
