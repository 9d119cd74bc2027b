"""The synthetic shapes world (`lens.world`) as a source, for `debug` / `nano` runs and tests
(`data.shards=synthetic`).

Written once into the run directory by the world's own writer (`lens.world.shards.write_shards`: the
same members and JSON as `lens world generate`), then read as image shards. Each sample renders at one
of several sizes and aspect ratios, so the bucketing and packing paths have work to do.
Deterministic: sample i of a seed is always the same scene at the same size.
"""

from __future__ import annotations

from pathlib import Path

from lens.source.tar import TarSource
from lens.world.shards import SHARD_PATTERN

SPEC = "synthetic"
SIZES = ((64, 64), (48, 80), (80, 48), (96, 96), (64, 112))  # (height, width) before bucketing


def _per_shard(samples: int, shards: int) -> int:
    return -(-samples // max(shards, 1))


def write_synthetic_shards(out: str | Path, samples: int = 48, shards: int = 4, seed: int = 0) -> list[Path]:
    """Write `samples` world samples into (at most) `shards` tar files under `out`; returns their paths.

    Sample i renders at SIZES[(7 i + seed) % 5]; each shard holds ceil(samples / shards) samples.
    """
    from lens.world.shards import write_shards

    sizes = [SIZES[(i * 7 + seed) % len(SIZES)] for i in range(len(SIZES))]  # i % 5 picks the size
    per_shard = _per_shard(samples, shards)
    return [Path(p) for p in write_shards(str(out), samples, seed=seed, shard_size=per_shard, sizes=sizes)]


class WorldSource(TarSource):
    """`samples` world samples in `shards` shards under `folder` (listed before they are written)."""

    def __init__(self, folder: str | Path, samples: int, shards: int, seed: int = 0):
        self.folder, self.samples, self.shards, self.seed = Path(folder), samples, shards, seed
        n = -(-samples // _per_shard(samples, shards))
        super().__init__([str(self.folder / (SHARD_PATTERN % i)) for i in range(n)], SPEC)

    def materialise(self) -> None:
        """The shards, written once: a marker file says they are complete, and a folder without it is
        written again."""
        marker = self.folder / f".complete-{self.samples}-{self.shards}-{self.seed}"
        if not marker.exists():
            for stale in [*self.folder.glob("world-*.tar"), *self.folder.glob(".complete-*")]:
                stale.unlink()  # a killed or other set
            write_synthetic_shards(self.folder, self.samples, self.shards, self.seed)
            marker.touch()

    def kind(self) -> str:
        return "images"
