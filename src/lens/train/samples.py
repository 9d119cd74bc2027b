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

from lens.errors import LensError
from lens.resolution import Bucket
from lens.source.base import BadSample, Record
from lens.text.grounding import check_spans
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
    # grounding (`lens.text.grounding`): the caption's spans (image records), or its token places
    # (S, 2) from `lens prepare` (feature records); None when the caption has none
    spans: tuple | None = None
    places: Tensor | None = None

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
    spans = caption_spans(record, field, caption)
    image, stored = record.decode_image()
    pixels, bucket = fit_to_bucket(image, buckets)
    return Sample(
        key=key, ref=ref, bucket=bucket, stored_size=stored, pixels=pixels, caption=caption, spans=spans
    )


def caption_spans(record: Record, field: str | None, caption: str | None) -> tuple | None:
    """The spans of the chosen caption from the record's grounding (None: it has none); malformed
    ones make the sample bad."""
    if record.grounding is not None and not isinstance(record.grounding, dict):
        raise BadSample(f"{record.key}: grounding must map caption names to [[start, end, x, y], ...]")
    spans = (record.grounding or {}).get(field) if field else None
    if not spans:
        return None
    try:
        return check_spans(spans, caption, f"{record.key}: grounding")
    except LensError as err:
        raise BadSample(str(err)) from None


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
    text = caption = places = None
    if field is not None:
        text = features.texts.get(field)
        if text is None:
            raise BadSample(f"{record.key}: data.caption asks for {field} features, which this sample lacks")
        # the caption itself too (`lens prepare` keeps it): a run that trains its LM encodes it again
        caption = record.dense if field == "dense" else record.brief
        places = features.places.get(field)
        if places is not None and tuple(places.shape) != (text.shape[0], 2):
            raise BadSample(
                f"{record.key}: {field} places {tuple(places.shape)} do not match its {text.shape[0]} tokens"
            )
    return Sample(
        key=record.key, ref=ref, bucket=bucket, stored_size=stored, latent=latent, text=text, caption=caption,
        spans=caption_spans(record, field, caption), places=places,
    )  # fmt: skip


def to_pixels(samples: list[Sample]) -> Tensor:
    """(B, 3, H, W) float in [-1, 1] from same-size uint8 samples."""
    arr = np.stack([s.pixels for s in samples])  # (B, H, W, 3)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
