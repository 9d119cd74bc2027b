"""Stages that need only pixels: corrupt, minimum area, clarity, grey entropy, luminance.

Clarity, entropy and luminance are measured on a scale-normalised copy (area NORM_SIDE^2, aspect kept,
antialiased), so a 4000x3000 photo and its 800x600 thumbnail score alike. Defaults were calibrated on
scikit-image's bundled photos and degraded copies of them (`python bench/data.py --calibrate`, table in
docs/data.md):

- clarity: variance of the 4-neighbour Laplacian of grey (0..255). Sharp photos score 40-5300 (lowest:
  `text` 40, `retina` 52, `moon` 65); Gaussian blur (at 512^2 scale) of sigma 2 px gives <= 18.2 and
  sigma 4 px <= 2.9. Threshold 20. It also drops `clock`, a motion-blurred photo (6.0), and `cell`, a
  smooth microscopy frame (2.3).
- entropy: Shannon entropy (bits) of the 256-bin grey histogram. Photos 4.3-7.6 (lowest: the Hubble
  deep field, 4.33); near-flat copies (contrast x0.03) <= 2.91, two-tone copies <= 2.84. Threshold 3.5.
- luminance: mean HSV value (max of R, G, B) in [0, 1]. Photos 0.27-0.71 and the Hubble deep field
  0.091; 1/8 exposure gives <= 0.086, blown out (+200) >= 0.95 (the Hubble frame: 0.86, a miss).
  Keep 0.10 <= V <= 0.92, so the mostly black Hubble frame is dropped by design.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops, ImageStat

from lens.data.filters.base import Item, Stage

NORM_SIDE = 512
MIN_AREA = 384 * 384
CLARITY_MIN = 20.0
ENTROPY_MIN = 3.5
LUMA_LOW, LUMA_HIGH = 0.10, 0.92


def normalised(item: Item) -> dict:
    """{'grey': float32 (H, W) and 'hist' (256,) at area NORM_SIDE^2, 'value': mean HSV V}; cached."""
    if "norm" not in item.cache:
        item.cache["norm"] = normalise_image(item.image)
    return item.cache["norm"]


def normalise_image(image: Image.Image) -> dict:
    w, h = image.size
    s = (NORM_SIDE * NORM_SIDE / (w * h)) ** 0.5
    size = (max(3, round(w * s)), max(3, round(h * s)))
    image = image if image.mode == "RGB" else image.convert("RGB")
    grey = image.convert("L")
    if size != (w, h):  # resizing one grey band is 3x cheaper than RGB; both steps are linear
        grey = grey.resize(size, Image.BILINEAR)  # PIL antialiases downscales
    r, g, b = image.split()
    value = ImageChops.lighter(ImageChops.lighter(r, g), b)  # HSV V = max(R, G, B), over every pixel
    return {
        "grey": np.asarray(grey, dtype=np.float32),
        "hist": np.asarray(grey.histogram(), dtype=np.int64),
        "value": ImageStat.Stat(value).mean[0] / 255.0,
    }


def laplacian_variance(grey: np.ndarray) -> float:
    g = grey
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]  # (H-2, W-2)
    return float(lap.var())


def grey_entropy(hist: np.ndarray) -> float:
    """Shannon entropy (bits) of a 256-bin histogram."""
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log2(p)).sum())


class Corrupt(Stage):
    name, rule = "corrupt", "drop samples whose image does not decode (score 0)"

    def score(self, item: Item) -> float:
        return 0.0 if item.image is None else 1.0

    def keep(self, score):
        return score == 1.0


class AtLeast(Stage):
    """A stage that keeps scores >= a minimum; `rule` is a format string of the minimum."""

    def __init__(self, minimum: float):
        self.minimum = minimum
        self.rule = self.rule.format(minimum)

    def keep(self, score):
        return score >= self.minimum


class MinArea(AtLeast):
    name, rule = "area", "drop width*height < {:g}"

    def __init__(self, min_area: int = MIN_AREA):
        super().__init__(min_area)

    def score(self, item: Item) -> float:
        w, h = item.size
        return float(w * h)


class Clarity(AtLeast):
    name, rule = "clarity", "drop Laplacian variance < {} (grey, area " + f"{NORM_SIDE}^2)"

    def __init__(self, minimum: float = CLARITY_MIN):
        super().__init__(minimum)

    def score(self, item: Item) -> float:
        return laplacian_variance(normalised(item)["grey"])


class Entropy(AtLeast):
    name, rule = "entropy", "drop grey-histogram entropy < {} bits"

    def __init__(self, minimum: float = ENTROPY_MIN):
        super().__init__(minimum)

    def score(self, item: Item) -> float:
        return grey_entropy(normalised(item)["hist"])


class Luminance(Stage):
    name = "luminance"

    def __init__(self, low: float = LUMA_LOW, high: float = LUMA_HIGH):
        self.low, self.high = low, high
        self.rule = f"keep {low} <= mean HSV value <= {high}"

    def score(self, item: Item) -> float:
        return normalised(item)["value"]

    def keep(self, score):
        return self.low <= score <= self.high
