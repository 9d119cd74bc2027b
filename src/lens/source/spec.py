"""`data.shards` (or a command's SHARDS argument) -> the source that reads it.

- "synthetic": the shapes world, written into the run directory (`lens.source.world`);
- `.parquet` files (one, a comma list, a glob, a brace pattern or a folder of them): `lens.source.parquet`;
- otherwise tar shards of images or features (`lens.source.tar`).
"""

from __future__ import annotations

import glob
from pathlib import Path

from lens.errors import LensError
from lens.source.base import Source

SUFFIXES = (".tar", ".parquet")


def expand_shards(spec: str) -> list[str]:
    """Folder (its .tar files, else its .parquet files), glob, brace pattern or comma list -> paths
    (missing files stay listed and count as bad)."""
    spec = spec.strip()
    if not spec:
        raise LensError("data.shards is empty: pass a folder of .tar shards, a glob or a brace pattern")
    if Path(spec).is_dir():
        paths = next(
            (found for s in SUFFIXES if (found := sorted(str(p) for p in Path(spec).glob(f"*{s}")))), []
        )
    elif "{" in spec:
        from braceexpand import braceexpand

        paths = list(braceexpand(spec))
    elif any(c in spec for c in "*?["):
        paths = sorted(glob.glob(spec))
    else:
        paths = [p.strip() for p in spec.split(",") if p.strip()]
    if not paths:
        raise LensError(f"data.shards={spec!r} matches no .tar or .parquet files")
    return paths


def open_source(spec: str, data_cfg, workdir: str | Path | None = None, seed: int = 0) -> Source:
    """The source `spec` names; `workdir` is where a run keeps the data it makes (`synthetic`, drawn
    with `seed`)."""
    if spec.strip() == "synthetic":
        from lens.source.world import WorldSource

        if workdir is None:
            raise LensError(
                "data.shards=synthetic is written inside a run directory; write world shards with "
                "`lens world generate --out DIR` and pass DIR"
            )
        folder = Path(workdir) / "synthetic"
        return WorldSource(folder, data_cfg.synthetic_samples, data_cfg.synthetic_shards, seed)
    paths = expand_shards(spec)
    parquet = [p.endswith(".parquet") for p in paths]
    if all(parquet):
        from lens.source.parquet import ParquetSource

        return ParquetSource(paths, data_cfg, spec)
    if any(parquet):
        raise LensError(f"data.shards={spec!r} mixes .parquet files with shards; name one kind")
    from lens.source.tar import TarSource

    return TarSource(paths, spec)
