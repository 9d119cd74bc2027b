"""The stage protocol: score a batch of samples, then decide each from its score.

A stage never drops anything itself: the runner calls `score_batch`, records `{"score", "keep"}` under
the stage's name in the sample's metadata, counts, and passes only kept samples to the next stage.
A score of None means "could not be scored" and keeps the sample (the stage says why in its counters).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image


@dataclass
class Item:
    """One sample on its way through the stages."""

    key: str
    sample: dict  # the raw shard sample (ext -> bytes), written out unchanged apart from `json`
    meta: dict
    image: Image.Image | None = None  # RGB, possibly decoded at reduced scale (JPEG draft)
    size: tuple[int, int] | None = None  # full (width, height) as stored
    error: str | None = None  # why it did not decode
    cache: dict = field(default_factory=dict)  # per-sample derived data shared by stages


class Stage:
    """Subclasses set `name` and `rule` (the threshold, in words), and implement `score` and `keep`."""

    name: str = ""
    rule: str = ""

    def score(self, item: Item) -> float | None:
        raise NotImplementedError

    def score_batch(self, items: list[Item]) -> list[float | None]:
        return [self.score(it) for it in items]

    def keep(self, score: float | None) -> bool:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "rule": self.rule}


def round_score(score: float | None) -> float | None:
    """Scores go into JSON; 6 significant digits are plenty and keep shards small."""
    return None if score is None else float(f"{float(score):.6g}")
