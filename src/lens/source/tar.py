"""Tar shards of images or of `lens prepare`'s features, as training records: the one reader that
knows which members of the WebDataset layout (`lens.data.sample`, docs/data.md) training reads, and the
writer of feature samples.

- images: `jpg|png|webp` + `caption.txt` (dense; or `txt`, or the json's `caption_text`) + optional
  `brief.txt` and `json` (its `grounding`: each caption's spans, `lens.text.grounding`);
- features: `features.safetensors` (`lens.source.base.encode_features`) + `json` with the key, the
  bucket size and both captions (a run that trains its LM encodes them again).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from lens.data.sample import BRIEF_EXT, DENSE_EXT, FEATURES_EXT, META_EXT, image_ext, read_meta
from lens.data.shards import iter_shard
from lens.source.base import Features, Record, Source, encode_features


def _text(members: dict, ext: str) -> str | None:
    data = members.get(ext)
    if data is None:
        return None
    text = data.decode("utf-8", errors="replace").strip()
    return text or None


def record_of(members: dict) -> Record:
    """One tar sample ({'__key__', ext: bytes}) -> a Record."""
    key = members["__key__"]
    if FEATURES_EXT in members:
        meta = read_meta(members)
        h, w = meta.get("height"), meta.get("width")
        size = (h, w) if all(isinstance(v, int) and v > 0 for v in (h, w)) else None
        return Record(
            key,
            meta.get("caption"),
            meta.get("brief"),
            features=members[FEATURES_EXT],
            size=size,
            grounding=meta.get("grounding"),
        )
    meta = read_meta(members)
    dense = _text(members, DENSE_EXT) or _text(members, "txt") or meta.get("caption_text")
    ext = image_ext(members)
    return Record(
        key,
        dense,
        _text(members, BRIEF_EXT),
        image=members[ext] if ext else None,
        grounding=meta.get("grounding"),
    )


def feature_members(
    key: str, features: Features, dense: str, brief: str | None, grounding: dict | None = None
) -> dict:
    """The tar members of one feature sample (what `record_of` reads back)."""
    height, width = (n * 16 for n in features.latent.shape[1:])
    meta = {"key": key, "height": height, "width": width, "caption": dense, "brief": brief}
    if grounding:
        meta["grounding"] = grounding
    return {"__key__": key, FEATURES_EXT: encode_features(features), META_EXT: json.dumps(meta).encode()}


class TarSource(Source):
    """One part per shard; a missing or damaged shard reads as far as it can and is noted."""

    def __init__(self, paths: list[str], spec: str = ""):
        self.parts, self.spec = [str(p) for p in paths], spec or ",".join(str(p) for p in paths)

    def records(self, part: int, damage: list[str] | None = None) -> Iterator[Record]:
        for members in iter_shard(self.parts[part], damage):
            yield record_of(members)
