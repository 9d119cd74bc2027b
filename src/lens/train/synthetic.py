"""Synthetic shards from the shapes world (`lens.world`), for `debug` / `nano` runs and tests.

Written by the world's own writer (`lens.world.shards.write_shards`: the same members and JSON as
`lens world generate`), with each sample rendered at one of several sizes and aspect ratios, so the
bucketing and packing paths have work to do. Deterministic: sample i of a seed is always the same
scene at the same size.
"""

from __future__ import annotations

from pathlib import Path

SIZES = ((64, 64), (48, 80), (80, 48), (96, 96), (64, 112))  # (height, width) before bucketing


def write_synthetic_shards(out: str | Path, samples: int = 48, shards: int = 4, seed: int = 0) -> list[Path]:
    """Write `samples` world samples into (at most) `shards` tar files under `out`; returns their paths.

    Sample i renders at SIZES[(7 i + seed) % 5]; each shard holds ceil(samples / shards) samples.
    """
    from lens.world.shards import write_shards

    sizes = [SIZES[(i * 7 + seed) % len(SIZES)] for i in range(len(SIZES))]  # i % 5 picks the size
    per_shard = -(-samples // max(shards, 1))
    return [Path(p) for p in write_shards(str(out), samples, seed=seed, shard_size=per_shard, sizes=sizes)]


def ensure_synthetic(out: str | Path, samples: int, shards: int, seed: int = 0) -> str:
    """Shards under `out` (written once; a marker file says they are complete, and a folder without it
    is written again). Returns the folder."""
    out = Path(out)
    marker = out / f".complete-{samples}-{shards}-{seed}"
    if not marker.exists():
        for stale in [*out.glob("world-*.tar"), *out.glob(".complete-*")]:  # a killed or other set
            stale.unlink()
        write_synthetic_shards(out, samples, shards, seed)
        marker.touch()
    return str(out)
