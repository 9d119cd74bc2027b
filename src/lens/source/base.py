"""What every training data source yields, and the interface the loader, the eval hooks, `lens prepare`
and `lens finetune` read it through.

A source is a list of parts (the pieces it reads in one go: a tar shard, a parquet row group) and
yields each part's `Record`s in a fixed order, so a reader's position is (part, records read) and a
record can be read again by its key. A part that cannot be read (missing, truncated, corrupt) ends
early and says so in `damage`; a record whose payload does not decode raises `BadSample` when it is
decoded. Callers count both and go on.

A record's captions are text already; its payload (an encoded image, or `lens prepare`'s features)
stays encoded until `decode_image` / `decode_features`, so the loader's threads do that work.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lens.errors import LensError

if TYPE_CHECKING:
    from torch import Tensor


class BadSample(Exception):
    """A sample that cannot be used (undecodable image, no caption, wrong kind); counted and skipped."""


@dataclass
class Features:
    """`lens prepare`'s payload, decoded."""

    latent: Tensor  # (128, h, w) at the sample's bucket size
    texts: dict[str, Tensor]  # "dense" (and "brief" when the sample had one) -> (S, L, D) valid tokens
    # the same keys -> (S, 2) float32 token places (`lens.text.grounding.token_places`), for captions
    # with grounding spans
    places: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Record:
    key: str  # unique within its part
    dense: str | None = None  # the dense caption (the training text)
    brief: str | None = None
    image: bytes | None = None  # an encoded image file (jpg, png, webp, ...)
    features: bytes | None = None  # `lens prepare`'s payload (see `encode_features`)
    size: tuple[int, int] | None = None  # (height, width) as stored, when known without decoding
    # per caption ("dense" / "brief"): [[start, end, x, y], ...] spans (`lens.text.grounding`), as the
    # sample's json holds them; checked when used
    grounding: dict | None = None

    @property
    def kind(self) -> str | None:
        return "features" if self.features is not None else "images" if self.image is not None else None

    def decode_image(self):
        """(RGB PIL image, (height, width) as stored)."""
        from lens.data.decode import CorruptImage, decode

        if self.image is None:
            raise BadSample(f"{self.key}: no image")
        try:
            image, info = decode(self.image)
        except CorruptImage as err:
            raise BadSample(f"{self.key}: {err}") from None
        return image, (info["height"], info["width"])

    def decode_features(self) -> Features:
        from safetensors.torch import load as load_bytes

        try:
            tensors = load_bytes(self.features)
        except Exception as err:  # safetensors raises its own types for corrupt payloads
            raise BadSample(f"{self.key}: features unreadable ({err})") from None
        latent = tensors.pop("latent", None)
        if latent is None or latent.ndim != 3:
            raise BadSample(f"{self.key}: the features have no (128, h, w) latent")

        def named(prefix: str) -> dict[str, Tensor]:
            return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}

        return Features(latent, named("text_"), named("places_"))

    def stored_size(self) -> tuple[int, int] | None:
        """(height, width) in pixels as stored: known, or read from the image header (None: unreadable)."""
        if self.size is not None or self.image is None:
            return self.size
        import io

        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(self.image)) as image:  # the header only
                return image.height, image.width
        except (UnidentifiedImageError, OSError):
            return None


def encode_features(features: Features) -> bytes:
    """The features payload: a safetensors file of `latent` and `text_dense` / `text_brief` (bf16),
    and `places_dense` / `places_brief` (float32) for grounded captions."""
    from safetensors.torch import save as save_bytes

    texts = {f"text_{k}": v for k, v in features.texts.items()}
    places = {f"places_{k}": v.float().contiguous() for k, v in features.places.items()}
    return save_bytes({"latent": features.latent, **texts, **places})


class Source:
    """Records part by part; `parts` names them (for logs), `records(i)` reads part i in order."""

    spec: str  # what data.shards (or the command line) named
    parts: list[str]

    def records(self, part: int, damage: list[str] | None = None) -> Iterator[Record]:
        """Part `part`'s records in order; a part that breaks ends early, with a line added to `damage`."""
        raise NotImplementedError

    def materialise(self) -> None:
        """Write what the source reads, if it makes its own data (the synthetic world); one process
        calls it before any reads."""

    def kind(self) -> str:
        """The payload of the first record that has one: "images" or "features"."""
        for part in range(len(self.parts)):
            for record in self.records(part):
                if record.kind is not None:
                    return record.kind
        example = f" (e.g. {self.parts[0]})" if self.parts else ""
        raise LensError(
            f"none of the {len(self.parts)} parts of {self.spec} holds a readable image or features "
            f"sample{example}"
        )
