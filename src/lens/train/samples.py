"""Training samples: shard lists, and one tar sample -> a `Sample` ready for batching.

Two shard kinds share the key-grouped WebDataset layout of `lens.data` (docs/data.md):
- images: `jpg|png|webp` + `caption.txt` (dense) + optional `brief.txt` and `json`;
- features (written by `lens prepare`): `features.safetensors` with `latent` (128, h, w) and
  `text_dense` / `text_brief` (S, L, D) LM features of the valid caption tokens, bf16, plus `json`.

Caption choice (dense / brief / mixed) and caption dropout are drawn from a generator seeded by
(seed, epoch, key), so a sample's condition does not depend on which rank or buffer it passed through.
"""

from __future__ import annotations

import glob
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from lens.data.sample import BRIEF_EXT, DENSE_EXT, IMAGE_EXTS, read_meta
from lens.errors import LensError
from lens.resolution import Bucket
from lens.train.buckets import bucket_for_latent, fit_to_bucket

FEATURES_EXT = "features.safetensors"


@dataclass
class Sample:
    key: str
    ref: tuple[int, str, int]  # (shard index, key, epoch): enough to read it again on resume
    bucket: Bucket
    pixels: np.ndarray | None = None  # (H, W, 3) uint8, image shards
    caption: str | None = None  # None = null condition (feature shards: from the json, if kept)
    latent: Tensor | None = None  # (128, h, w), feature shards
    text: Tensor | None = None  # (S, L, D), feature shards; None = null condition

    @property
    def image_tokens(self) -> int:
        return self.bucket.tokens


class BadSample(Exception):
    """A sample that cannot be used (undecodable image, no caption, wrong kind); counted and skipped."""


def expand_shards(spec: str) -> list[str]:
    """Folder, glob, brace pattern or comma list -> shard paths (missing files stay listed and count as bad)."""
    spec = spec.strip()
    if not spec:
        raise LensError("data.shards is empty: pass a folder of .tar shards, a glob or a brace pattern")
    if Path(spec).is_dir():
        paths = sorted(str(p) for p in Path(spec).glob("*.tar"))
    elif "{" in spec:
        from braceexpand import braceexpand

        paths = list(braceexpand(spec))
    elif any(c in spec for c in "*?["):
        paths = sorted(glob.glob(spec))
    else:
        paths = [p.strip() for p in spec.split(",") if p.strip()]
    if not paths:
        raise LensError(f"data.shards={spec!r} matches no .tar files")
    return paths


def _rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, zlib.crc32(key.encode())])


def choose_caption(policy: str, brief_prob: float, dropout: float, rng: np.random.Generator) -> str | None:
    """'dense' | 'brief' | None (dropped to the null condition); two draws, always both made."""
    use_brief = rng.random() < brief_prob
    dropped = rng.random() < dropout
    if dropped:
        return None
    if policy == "mixed":
        return "brief" if use_brief else "dense"
    return policy


def _text(raw: dict, ext: str) -> str | None:
    data = raw.get(ext)
    if data is None:
        return None
    text = data.decode("utf-8", errors="replace").strip()
    return text or None


def decode_sample(raw: dict, shard: int, epoch: int, buckets: list[Bucket], cfg, seed: int) -> Sample:
    """A raw tar sample -> Sample (raises BadSample with a reason)."""
    key = raw["__key__"]
    field = choose_caption(cfg.caption, cfg.mixed_brief_prob, cfg.caption_dropout, _rng(seed, epoch, key))
    ref = (shard, key, epoch)
    if FEATURES_EXT in raw:
        return _decode_features(raw, ref, field, buckets)
    ext = next((e for e in IMAGE_EXTS if e in raw), None)
    if ext is None:
        raise BadSample(f"{key}: neither an image ({', '.join(IMAGE_EXTS)}) nor {FEATURES_EXT}")
    from lens.data.decode import CorruptImage, decode

    caption = _pick_text(raw, field, key)
    try:
        image, _ = decode(raw[ext])
    except CorruptImage as err:
        raise BadSample(f"{key}.{ext}: {err}") from None
    pixels, bucket = fit_to_bucket(image, buckets)
    return Sample(key=key, ref=ref, bucket=bucket, pixels=pixels, caption=caption)


def _pick_text(raw: dict, field: str | None, key: str) -> str | None:
    dense = _text(raw, DENSE_EXT) or _text(raw, "txt") or read_meta(raw).get("caption_text")
    if not dense:
        raise BadSample(f"{key}: no {DENSE_EXT} caption")
    if field is None:
        return None
    if field == "brief":
        brief = _text(raw, BRIEF_EXT)
        if not brief:
            raise BadSample(f"{key}: data.caption asks for {BRIEF_EXT}, which this sample lacks")
        return brief
    return dense


def _decode_features(raw: dict, ref, field: str | None, buckets: list[Bucket]) -> Sample:
    from safetensors.torch import load as load_bytes

    key = ref[1]
    try:
        tensors = load_bytes(raw[FEATURES_EXT])
    except Exception as err:  # safetensors raises its own types for corrupt payloads
        raise BadSample(f"{key}.{FEATURES_EXT}: unreadable ({err})") from None
    latent = tensors.get("latent")
    if latent is None or latent.ndim != 3:
        raise BadSample(f"{key}: {FEATURES_EXT} has no (128, h, w) latent")
    bucket = bucket_for_latent(latent.shape[1] * 16, latent.shape[2] * 16, buckets)
    text = caption = None
    if field is not None:
        text = tensors.get(f"text_{field}")
        if text is None:
            raise BadSample(f"{key}: data.caption asks for text_{field}, which this sample lacks")
        # the caption itself too (`lens prepare` keeps it in the json): a run that trains its LM
        # encodes it again
        caption = read_meta(raw).get("caption" if field == "dense" else "brief")
    return Sample(key=key, ref=ref, bucket=bucket, latent=latent, text=text, caption=caption)


def stored_size(raw: dict, sample: Sample) -> tuple[int, int]:
    """(height, width) in pixels of a decoded sample as stored, before any fit to its bucket."""
    if sample.latent is not None:
        return sample.latent.shape[1] * 16, sample.latent.shape[2] * 16
    ext = next(e for e in IMAGE_EXTS if e in raw)
    with Image.open(io.BytesIO(raw[ext])) as image:  # reads the header only
        return image.height, image.width


def sample_kind(sample: Sample) -> str:
    return "features" if sample.latent is not None else "images"


def to_pixels(samples: list[Sample]) -> Tensor:
    """(B, 3, H, W) float in [-1, 1] from same-size uint8 samples."""
    arr = np.stack([s.pixels for s in samples])  # (B, H, W, 3)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
