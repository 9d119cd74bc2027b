"""The shard sample format shared by ingest, filter, caption and training (documented in docs/data.md).

A sample is a group of tar members `<key>.<ext>`; WebDataset splits the name at the first dot, so keys
never contain dots. Extensions used by Lens:

- `jpg` / `png` / `webp`: the normalised image (RGB, EXIF orientation applied, no metadata).
- `json`: metadata — `width`, `height`, `bucket` ("HxW" of the nearest Lens training bucket),
  `source`, `alt` (existing alt text or null), `orig` (format/mode/size before normalising),
  `filters` ({stage: {"score": float|null, "keep": bool}}), `caption` (model, tokens, attempts...).
- `caption.txt`: the dense caption (training text). `brief.txt`: a brief caption (ablations only).
- `features.safetensors`: `lens prepare`'s latent and caption features, in place of the image
  (`lens.source.tar` reads and writes these samples).
"""

from __future__ import annotations

import json
import re

from lens.resolution import lens_buckets, nearest_bucket

IMAGE_EXTS = ("jpg", "png", "webp")
META_EXT = "json"
DENSE_EXT = "caption.txt"
BRIEF_EXT = "brief.txt"
FEATURES_EXT = "features.safetensors"
CAPTION_EXTS = {"dense": DENSE_EXT, "brief": BRIEF_EXT}

_BUCKETS = lens_buckets()
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-/]")


def safe_key(text: str) -> str:
    """A WebDataset-safe key: dots and odd characters become '_' (a dot would split the key)."""
    return _UNSAFE.sub("_", text).strip("/") or "_"


def bucket_label(height: int, width: int) -> str:
    """'HxW' of the Lens stage-2 bucket nearest in aspect ratio, then area."""
    b = nearest_bucket(height, width, _BUCKETS)
    return f"{b.height}x{b.width}"


def image_ext(sample: dict) -> str | None:
    """Which image extension a sample carries (None if it has none)."""
    return next((e for e in IMAGE_EXTS if e in sample), None)


def read_meta(sample: dict) -> dict:
    raw = sample.get(META_EXT)
    if not raw:
        return {}
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def dump_meta(meta: dict) -> bytes:
    return json.dumps(meta, ensure_ascii=False, sort_keys=True).encode()
