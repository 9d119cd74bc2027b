"""A source's `Record` -> a `Sample` ready for batching (bucket, caption choice), and micro-batches.

Two kinds of records (`lens.source`): images with their captions, and `lens prepare`'s features
(`latent` (128, h, w) and `text_dense` / `text_brief` (S, L, D) LM features of the valid caption
tokens, bf16). A run reads one kind.

Caption choice (dense / brief / mixed) and caption dropout are drawn from a generator seeded by
(seed, epoch, key), so a sample's condition does not depend on which rank or buffer it passed through.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lens.resolution import Bucket
from lens.source.base import BadSample, Record
from lens.train.buckets import bucket_for_latent, fit_to_bucket


@dataclass
class Sample:
    key: str
    ref: tuple[int, str, int]  # (part index, key, epoch): enough to read it again on resume
    bucket: Bucket
    pixels: np.ndarray | None = None  # (H, W, 3) uint8, image records
    caption: str | None = None  # None = null condition (features: the caption text, if kept)
    latent: Tensor | None = None  # (128, h, w), feature records
    text: Tensor | None = None  # (S, L, D), feature records; None = null condition
    stored_size: tuple[int, int] | None = None  # (height, width) in pixels as stored, before the bucket fit

    @property
    def image_tokens(self) -> int:
        return self.bucket.tokens

    @property
    def kind(self) -> str:
        return "features" if self.latent is not None else "images"


@dataclass
class Microbatch:
    samples: list[Sample]
    packed: bool

    @property
    def image_tokens(self) -> int:
        return sum(s.image_tokens for s in self.samples)


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


def decode_sample(record: Record, part: int, epoch: int, buckets: list[Bucket], cfg, seed: int) -> Sample:
    """A record -> Sample (raises BadSample with a reason)."""
    key = record.key
    field = choose_caption(cfg.caption, cfg.mixed_brief_prob, cfg.caption_dropout, _rng(seed, epoch, key))
    ref = (part, key, epoch)
    if record.kind == "features":
        return _decode_features(record, ref, field, buckets)
    if record.kind is None:
        raise BadSample(f"{key}: neither an image nor features")
    caption = _pick_text(record, field)
    image, stored = record.decode_image()
    pixels, bucket = fit_to_bucket(image, buckets)
    return Sample(key=key, ref=ref, bucket=bucket, stored_size=stored, pixels=pixels, caption=caption)


def _pick_text(record: Record, field: str | None) -> str | None:
    if not record.dense:
        raise BadSample(f"{record.key}: no dense caption")
    if field is None:
        return None
    if field == "brief":
        if not record.brief:
            raise BadSample(f"{record.key}: data.caption asks for a brief caption, which this sample lacks")
        return record.brief
    return record.dense


def _decode_features(record: Record, ref, field: str | None, buckets: list[Bucket]) -> Sample:
    features = record.decode_features()
    latent = features.latent
    stored = (latent.shape[1] * 16, latent.shape[2] * 16)
    bucket = bucket_for_latent(*stored, buckets)
    text = caption = None
    if field is not None:
        text = features.texts.get(field)
        if text is None:
            raise BadSample(f"{record.key}: data.caption asks for {field} features, which this sample lacks")
        # the caption itself too (`lens prepare` keeps it): a run that trains its LM encodes it again
        caption = record.dense if field == "dense" else record.brief
    return Sample(
        key=record.key, ref=ref, bucket=bucket, stored_size=stored, latent=latent, text=text, caption=caption
    )


def to_pixels(samples: list[Sample]) -> Tensor:
    """(B, 3, H, W) float in [-1, 1] from same-size uint8 samples."""
    arr = np.stack([s.pixels for s in samples])  # (B, H, W, 3)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
