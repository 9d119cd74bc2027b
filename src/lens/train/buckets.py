"""Training resolutions: the paper's 27 aspect/area buckets or a custom list, and image -> bucket fitting.

A bucket is (height, width, per-rank batch size). Each image goes to the bucket nearest in aspect ratio,
then area (`lens.resolution.nearest_bucket`), is resized to cover it and centre-cropped. Per-area batch
sizes (24 / 10 / 6 at 512^2 / 768^2 / 1024^2 in the recipe) keep step times similar across buckets.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from lens.errors import LensError
from lens.resolution import Bucket, lens_buckets, nearest_bucket, parse_size

_NAMED = {
    "lens": (512, 768, 1024),
    "lens-512": (512,),
    "lens-768": (768,),
    "lens-1024": (1024,),
}


def parse_buckets(spec: str, batch_size: int = 0) -> list[Bucket]:
    """'lens' (27), 'lens-512' ... or 'HxW:batch,HxW:batch'; batch_size > 0 replaces every batch size."""
    if spec in _NAMED:
        buckets = lens_buckets(_NAMED[spec])
    else:
        buckets = []
        for item in spec.split(","):
            size, colon, batch = item.partition(":")
            if "x" not in size.lower() or (colon and not batch.strip().isdigit()):
                raise LensError(
                    f"bucket {item!r} in data.buckets={spec!r} is not HxW:batch; write e.g. "
                    f"'512x512:24,384x672:24' or use one of {', '.join(_NAMED)}"
                )
            h, w = parse_size(size.strip(), f"bucket {item.strip()!r}")
            if not colon and batch_size <= 0:
                raise LensError(
                    f"bucket {item!r} has no batch size; write {h}x{w}:BATCH or set data.batch_size"
                )
            buckets.append(Bucket(h, w, int(batch) if colon else 1))
    if batch_size > 0:
        buckets = [Bucket(b.height, b.width, batch_size) for b in buckets]
    if any(b.batch_size < 1 for b in buckets):
        raise LensError("every bucket needs a batch size >= 1")
    if len({(b.height, b.width) for b in buckets}) != len(buckets):
        raise LensError(f"data.buckets={spec!r} lists a size twice")
    return buckets


def fit_to_bucket(image: Image.Image, buckets: list[Bucket]) -> tuple[np.ndarray, Bucket]:
    """Resize to cover the nearest bucket and centre-crop; returns (H, W, 3) uint8 and the bucket."""
    bucket = nearest_bucket(image.height, image.width, buckets)
    scale = max(bucket.height / image.height, bucket.width / image.width)
    size = (max(bucket.width, round(image.width * scale)), max(bucket.height, round(image.height * scale)))
    resized = image.convert("RGB").resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    left = (size[0] - bucket.width) // 2
    top = (size[1] - bucket.height) // 2
    cropped = resized.crop((left, top, left + bucket.width, top + bucket.height))
    return np.asarray(cropped, dtype=np.uint8), bucket


def bucket_for_latent(height: int, width: int, buckets: list[Bucket]) -> Bucket:
    """The bucket of a precomputed latent of (height, width) pixels; it must match one exactly."""
    for b in buckets:
        if (b.height, b.width) == (height, width):
            return b
    sizes = ", ".join(f"{b.height}x{b.width}" for b in buckets[:6])
    raise LensError(
        f"a precomputed latent is {height}x{width} px, which is not one of data.buckets ({sizes}...): "
        "train with the bucket list the shards were prepared with"
    )


def default_pack_tokens(buckets: list[Bucket]) -> int:
    """Image-token budget of one pack: what the largest bucket batch holds (24 x 1024 in stage 2)."""
    return max(b.batch_size * b.tokens for b in buckets)
