"""Image sizes: the released aspect-ratio presets, the training buckets, "HxW" parsing and validation.

All sizes are (height, width) in pixels. Ratios are named W:H, as in the paper (1:2 is a tall image).
Latent tokens are 16x16 pixel patches (8x VAE downsampling, then 2x2 patchify), so sides must be
multiples of 16.
"""

from __future__ import annotations

from dataclasses import dataclass

from lens.errors import LensError

PATCH_PIXELS = 16
# Largest accepted image area. 2048^2 = 16,384 image tokens; beyond that the joint attention of the
# 4.1B model needs more memory than one 80 GB GPU holds at batch 2 (CFG). Override with `max_area`.
MAX_AREA = 2048 * 2048

RATIOS = ("1:2", "9:16", "2:3", "3:4", "1:1", "4:3", "3:2", "16:9", "2:1")

# Released presets at base 1024, ratio W:H -> (height, width).
_BASE_1024 = {
    "1:2": (1472, 736),
    "9:16": (1376, 768),
    "2:3": (1248, 832),
    "3:4": (1152, 864),
    "1:1": (1024, 1024),
    "4:3": (864, 1152),
    "3:2": (832, 1248),
    "16:9": (768, 1376),
    "2:1": (736, 1472),
}


# Released presets at base 1440. Most sides are the 1024 ones * 1440/1024 rounded to 16, but 1:2 and
# 2:1 use 2080 (the rule gives 2064): the released table is the contract, so it is written out.
_BASE_1440 = {
    "1:2": (2080, 1040),
    "9:16": (1936, 1088),
    "2:3": (1760, 1168),
    "3:4": (1616, 1216),
    "1:1": (1440, 1440),
    "4:3": (1216, 1616),
    "3:2": (1168, 1760),
    "16:9": (1088, 1936),
    "2:1": (1040, 2080),
}
_PRESETS = {1024: _BASE_1024, 1440: _BASE_1440}


def preset(aspect: str = "1:1", base: int = 1024) -> tuple[int, int]:
    """(height, width) of a released preset at base 1024 or 1440, exactly as the released table has it."""
    if aspect not in _BASE_1024:
        raise LensError(f"unknown aspect ratio {aspect!r}; choose one of {', '.join(RATIOS)}")
    if base not in _PRESETS:
        raise LensError(f"preset base must be 1024 or 1440, got {base}; pass height/width for other sizes")
    return _PRESETS[base][aspect]


@dataclass(frozen=True)
class Bucket:
    """One training resolution: (height, width) and the per-rank batch size used for it."""

    height: int
    width: int
    batch_size: int

    @property
    def tokens(self) -> int:
        return (self.height // PATCH_PIXELS) * (self.width // PATCH_PIXELS)

    @property
    def aspect(self) -> float:
        return self.width / self.height


# Stage-2 buckets of the paper: 3 areas x 9 ratios, (height, width), per-GPU batch 24 / 10 / 6.
_STAGE2 = {
    512: (
        (704, 352),
        (672, 384),
        (640, 416),
        (608, 448),
        (512, 512),
        (448, 608),
        (416, 640),
        (384, 672),
        (352, 704),
    ),
    768: (
        (1088, 544),
        (1024, 576),
        (960, 640),
        (896, 672),
        (768, 768),
        (672, 896),
        (640, 960),
        (576, 1024),
        (544, 1088),
    ),
    1024: tuple(_BASE_1024[r] for r in RATIOS),
}
_STAGE2_BATCH = {512: 24, 768: 10, 1024: 6}


def lens_buckets(areas: tuple[int, ...] = (512, 768, 1024)) -> list[Bucket]:
    """The paper's stage-2 buckets for the given area sides (27 for all three)."""
    out = []
    for side in areas:
        if side not in _STAGE2:
            raise LensError(f"no Lens bucket table for area {side}^2; known: {sorted(_STAGE2)}")
        out += [Bucket(h, w, _STAGE2_BATCH[side]) for h, w in _STAGE2[side]]
    return out


def nearest_bucket(height: int, width: int, buckets: list[Bucket]) -> Bucket:
    """The bucket whose aspect ratio is closest (in log space) to the image's, then whose area is closest."""
    import math

    if not buckets:
        raise LensError("empty bucket list")
    ratio = math.log(width / height)
    area = height * width
    return min(
        buckets, key=lambda b: (round(abs(math.log(b.aspect) - ratio), 6), abs(b.height * b.width - area))
    )


def parse_size(text: str, name: str = "size") -> tuple[int, int]:
    """'64x96' -> (64, 96): "HEIGHTxWIDTH", each side a multiple of 16 (`validate_size`).

    `name` is what the error calls the value (e.g. "log.sample_size", "--size").
    """
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise LensError(f"{name} {text!r} is not HEIGHTxWIDTH; write it like 64x64 or 64x96") from None
    return validate_size(h, w)


def validate_size(height: int, width: int, *, max_area: int = MAX_AREA) -> tuple[int, int]:
    """Check an explicit (height, width) and return it, or raise a LensError that says how to fix it."""
    for name, v in (("height", height), ("width", width)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise LensError(f"{name} must be an integer number of pixels, got {v!r}")
        if v <= 0:
            raise LensError(f"{name} must be positive, got {v}")
        if v % PATCH_PIXELS:
            lo, hi = v // PATCH_PIXELS * PATCH_PIXELS, (v // PATCH_PIXELS + 1) * PATCH_PIXELS
            raise LensError(f"{name}={v} is not a multiple of {PATCH_PIXELS}; use {lo or hi} or {hi}")
    if height * width > max_area:
        raise LensError(
            f"{height}x{width} is {height * width:,} pixels, above the limit of {max_area:,} "
            f"(about {int(max_area**0.5)}^2); choose a smaller size or raise max_area if you have the memory"
        )
    return height, width
