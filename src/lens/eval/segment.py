"""Segmentation: colour regions that stand out from a near-neutral background.

1. The background is a plane in RGB fitted to the image border (robustly: border pixels far from
   the first fit are dropped and it is refitted), which models plain and linear-gradient
   backgrounds exactly and faint textures closely.
2. Each pixel's CIELAB distance from that plane (delta E) marks candidate pixels (hysteresis: weak
   pixels join components that hold strong ones).
3. Inside each component the object keeps the pixels at least half as far from the background as
   its typical pixel: that is the 50% coverage line of an anti-aliased edge, so the mask keeps the
   true outline at any size.
4. A component whose solid pixels carry several colours (touching objects) is split by colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lens.eval.colors import COLOR_NAMES, label_pixels, name_color, to_lab

WEAK_DE = 12.0  # delta E that may belong to an object
STRONG_DE = 24.0  # delta E that surely does
EDGE_FRACTION = 0.5  # keep pixels above this fraction of the component's typical delta E
SOLID_FRACTION = 0.8  # pixels above this fraction are "solid" (interior) for colour statistics
SPLIT_SHARE = 0.2  # a colour owning this share of the solid pixels is its own object
DOMINANT_SHARE = 0.75  # a component whose main colour owns this share stays whole
MIN_AREA = 0.004  # least object area, fraction of the image area
MAX_AREA = 0.45  # larger regions are background, not objects


@dataclass
class Region:
    mask: np.ndarray  # (h, w) bool, cropped to the box
    top: int
    left: int
    lab: np.ndarray  # (3,) median Lab of the solid pixels
    color: str
    purity: float  # share of the mask within delta E 20 of the median colour


def fit_background(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float RGB -> (H, W, 3) background plane fitted to the border pixels."""
    h, w, _ = rgb.shape
    yy, xx = np.mgrid[0:h, 0:w]
    border = np.zeros((h, w), bool)
    border[:2], border[-2:], border[:, :2], border[:, -2:] = True, True, True, True
    design = np.stack([np.ones(h * w), xx.ravel() / w, yy.ravel() / h], axis=1)  # (HW, 3)
    keep = border.ravel()
    values = rgb.reshape(-1, 3)
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(design[keep], values[keep], rcond=None)
        resid = np.abs(design @ coef - values).max(axis=1)
        cut = max(3.0 * np.median(resid[border.ravel()]), 12.0)
        new_keep = border.ravel() & (resid <= cut)
        if new_keep.sum() < 0.3 * border.sum() or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return (design @ coef).reshape(h, w, 3)


@dataclass
class Segmentation:
    regions: list[Region]
    border_de: float  # median delta E of the border from the fitted background: near 0 for a clean one


def segment(image: np.ndarray) -> Segmentation:
    """(H, W, 3) uint8 RGB -> object regions (in raster order of their components) and how well the
    background model fits the border."""
    rgb = image.astype(np.float32)
    h, w, _ = rgb.shape
    lab = to_lab(rgb)
    bg_lab = to_lab(np.clip(fit_background(rgb), 0, 255))
    de = np.linalg.norm(lab - bg_lab, axis=-1)  # (H, W)
    border = np.concatenate([de[:2].ravel(), de[-2:].ravel(), de[:, :2].ravel(), de[:, -2:].ravel()])
    weak, n = ndimage.label(de > WEAK_DE)
    strong_ids = np.unique(weak[de > STRONG_DE])
    min_area = max(MIN_AREA * h * w, 12)
    regions = []
    for sl, cid in zip(ndimage.find_objects(weak), range(1, n + 1)):
        if sl is None or cid not in strong_ids:
            continue
        comp = weak[sl] == cid
        d = de[sl]
        typical = np.percentile(d[comp], 90)
        core = comp & (d >= EDGE_FRACTION * typical)
        solid = core & (d >= SOLID_FRACTION * typical)
        for mask in _split(core, solid, lab[sl], min_area):
            regions += _regions(mask, solid, lab[sl], sl, min_area, h * w)
    return Segmentation(regions, float(np.median(border)))


def _split(core: np.ndarray, solid: np.ndarray, lab: np.ndarray, min_area: float) -> list[np.ndarray]:
    """One mask when one colour dominates the solid pixels, else one mask per significant colour."""
    names = label_pixels(lab[solid])
    if names.size == 0:
        return []
    counts = np.bincount(names, minlength=len(COLOR_NAMES))
    if counts.max() >= DOMINANT_SHARE * names.size:
        return [core]
    major = [k for k in range(len(COLOR_NAMES)) if counts[k] >= max(SPLIT_SHARE * names.size, min_area)]
    if not major:
        return []  # colour chaos (noise), no object
    centres = np.stack([np.median(lab[solid][names == k], axis=0) for k in major])  # (K, 3)
    nearest = ((lab[..., None, :] - centres) ** 2).sum(-1).argmin(-1)  # (h, w)
    return [core & (nearest == i) for i in range(len(major))]


def _regions(
    mask: np.ndarray,
    solid: np.ndarray,
    lab: np.ndarray,
    sl: tuple[slice, slice],
    min_area: float,
    image_area: int,
) -> list[Region]:
    pieces, n = ndimage.label(mask)
    out = []
    for psl, pid in zip(ndimage.find_objects(pieces), range(1, n + 1)):
        m = pieces[psl] == pid
        area = int(m.sum())
        if area < min_area or area > MAX_AREA * image_area:
            continue
        px = lab[psl][m]  # (area, 3)
        inner = lab[psl][m & solid[psl]]
        med = np.median(inner if len(inner) >= 4 else px, axis=0)
        purity = float((np.linalg.norm(px - med, axis=1) < 20.0).mean())
        out.append(
            Region(m, sl[0].start + psl[0].start, sl[1].start + psl[1].start, med, name_color(med), purity)
        )
    return out
