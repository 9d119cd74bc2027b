"""Calibration of the pixel-statistics thresholds on real photos and degraded copies of them.

Photos are scikit-image's bundled images (offline, no download). Each is degraded the ways the
clarity / entropy / luminance stages are meant to catch: Gaussian blur (sigma 2 and 4 px, at 512^2
scale), a near-flat copy (contrast x0.03), a two-tone copy (grey > 127), 1/8 exposure, and blown out (+200 grey levels). The table
this prints is in docs/data.md; tests assert that the defaults separate the groups as documented.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from lens.data.filters.image_stats import grey_entropy, laplacian_variance, normalise_image

# Real photographs among scikit-image's data (drawings, phantoms and binary masks left out).
PHOTOS = (
    "astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "hubble_deep_field",
    "immunohistochemistry", "retina", "brick", "grass", "gravel", "cell", "clock", "page", "text",
)  # fmt: skip
# Real photos a default stage drops on purpose, and which stage: see image_stats.py.
EXPECTED_DROPS = {"clock": "clarity", "cell": "clarity", "hubble_deep_field": "luminance"}
# Which stage must catch each degradation.
DEGRADATIONS = {
    "blur2": "clarity",
    "blur4": "clarity",
    "flat": "entropy",
    "binary": "entropy",
    "dark": "luminance",
    "blown": "luminance",
}
# Degraded copies the defaults miss (documented): the Hubble frame +200 is a grey fog, V = 0.85.
KNOWN_MISSES = {("hubble_deep_field", "blown")}


def photo(name: str) -> Image.Image:
    import skimage.data

    a = np.asarray(getattr(skimage.data, name)())
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    return Image.fromarray(a).convert("RGB")


def degrade(image: Image.Image) -> dict[str, Image.Image]:
    small = image.resize(_norm_size(image), Image.BILINEAR)  # blur radius is meant at 512^2 scale
    return {
        "blur2": small.filter(ImageFilter.GaussianBlur(2)),
        "blur4": small.filter(ImageFilter.GaussianBlur(4)),
        "flat": ImageEnhance.Contrast(image).enhance(0.03),
        "binary": image.convert("L").point(lambda v: 255 if v > 127 else 0).convert("RGB"),
        "dark": image.point(lambda v: v // 8),
        "blown": image.point(lambda v: min(255, v + 200)),
    }


def _norm_size(image: Image.Image) -> tuple[int, int]:
    w, h = image.size
    s = (512 * 512 / (w * h)) ** 0.5
    return max(3, round(w * s)), max(3, round(h * s))


def measure(image: Image.Image) -> dict[str, float]:
    n = normalise_image(image)
    return {
        "clarity": laplacian_variance(n["grey"]),
        "entropy": grey_entropy(n["hist"]),
        "luminance": n["value"],
    }


def calibration_rows(names=PHOTOS) -> list[dict]:
    """One row per (photo, variant): {'photo', 'variant', 'clarity', 'entropy', 'luminance'}."""
    rows = []
    for name in names:
        im = photo(name)
        rows.append({"photo": name, "variant": "original", **measure(im)})
        rows += [{"photo": name, "variant": v, **measure(d)} for v, d in degrade(im).items()]
    return rows
