"""Synthetic shards from the shapes world (`lens.world`), for `debug` / `nano` runs and tests.

Same layout as `lens world generate` (png + caption.txt + brief.txt + json), but each sample is
rendered at one of several sizes and aspect ratios, so the bucketing and packing paths have work to
do. Deterministic: sample i of a seed is always the same scene at the same size.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from lens.data.shards import ShardWriter

SIZES = ((64, 64), (48, 80), (80, 48), (96, 96), (64, 112))  # (height, width) before bucketing


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def write_synthetic_shards(out: str | Path, samples: int = 48, shards: int = 4, seed: int = 0) -> list[Path]:
    """Write `samples` world samples round-robin into `shards` tar files under `out`; returns their paths."""
    from lens.world.shards import make_sample

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"synthetic-{i:04d}.tar" for i in range(shards)]
    writers = [ShardWriter(p) for p in paths]
    try:
        for i in range(samples):
            h, w = SIZES[(i * 7 + seed) % len(SIZES)]
            s = make_sample(seed, i, h, w)
            meta = {"width": w, "height": h, "source": "lens.world", "scene": json.loads(s.scene.to_json())}
            writers[i % shards].write(
                {
                    "__key__": f"s{i:06d}",
                    "png": _png(s.image),
                    "caption.txt": s.caption,
                    "brief.txt": s.brief,
                    "json": json.dumps(meta).encode(),
                }
            )
    except BaseException:
        for w in writers:
            w.abort()
        raise
    for w in writers:
        w.close()
    return paths


def ensure_synthetic(out: str | Path, samples: int, shards: int, seed: int = 0) -> str:
    """Shards under `out` (written once; a marker file says they are complete). Returns the folder."""
    out = Path(out)
    marker = out / f".complete-{samples}-{shards}-{seed}"
    if not marker.exists():
        write_synthetic_shards(out, samples, shards, seed)
        marker.touch()
    return str(out)
