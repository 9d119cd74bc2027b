"""What `lens data ingest` can read, turned into work units.

- a folder (recursive, sorted): image files, with optional alt text in a same-stem `.txt` / `.caption`
  / `.json` sidecar; `.tar` shards inside it are read as shards; other unknown files become items that
  fail to decode and are counted as `not_image`;
- `.tar` / `.tar.gz` shards (WebDataset, e.g. img2dataset output: `key.jpg` + `key.txt` + `key.json`);
- `.parquet` / `.csv` / `.tsv` / `.jsonl` lists with a path column and an optional alt-text column.
  URLs are not downloaded here: run img2dataset (it writes WebDataset shards) and ingest its output.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from lens.data.units import Unit
from lens.errors import LensError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm"}
TEXT_SIDECARS = (".txt", ".caption")
LIST_SUFFIXES = {".parquet", ".csv", ".tsv", ".jsonl"}
# never images themselves: sidecars and the metadata img2dataset and friends leave next to shards
META_SUFFIXES = {".txt", ".caption", ".json", ".md", ".parquet", ".csv", ".tsv", ".jsonl", ".tmp"}
PATH_COLUMNS = ("path", "image", "image_path", "file", "filepath", "filename")
TEXT_COLUMNS = ("caption", "alt", "alt_text", "text", "TEXT")


def is_shard(path: Path) -> bool:
    return path.name.endswith((".tar", ".tar.gz", ".tgz"))


def plan_units(
    inputs: list[str],
    *,
    per_shard: int = 1000,
    path_column: str | None = None,
    text_column: str | None = None,
) -> list[Unit]:
    """Deterministic units: file items chunked `per_shard` at a time, then one unit per input tar."""
    if per_shard < 1:
        raise LensError(f"--per-shard must be >= 1, got {per_shard}")
    items: list[tuple[str, str | None]] = []
    tars: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise LensError(f"input {p} does not exist; pass image folders, .tar shards or path lists")
        if p.is_dir():
            folder_items, folder_tars = _scan_folder(p)
            items += folder_items
            tars += folder_tars
        elif is_shard(p):
            tars.append(p)
        elif p.suffix.lower() in LIST_SUFFIXES:
            items += _read_list(p, path_column, text_column)
        else:
            items.append((str(p), None))
    units = [
        Unit(f"{k:06d}", "files", tuple(items[i : i + per_shard]))
        for k, i in enumerate(range(0, len(items), per_shard))
    ]
    units += [Unit(f"{len(units) + k:06d}", "tar", path=str(t)) for k, t in enumerate(tars)]
    if not units:
        raise LensError(f"found no images or shards in {', '.join(inputs)}")
    return units


def _scan_folder(root: Path) -> tuple[list[tuple[str, str | None]], list[Path]]:
    items, tars = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        names = set(filenames)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            suffix = path.suffix.lower()
            if name.startswith(".") or suffix in META_SUFFIXES or not path.is_file():
                continue
            if is_shard(path):
                tars.append(path)
                continue
            items.append((str(path), _sidecar_text(path, names)))
    return items, tars


def _sidecar_text(image: Path, names: set[str]) -> str | None:
    for ext in TEXT_SIDECARS:
        if image.stem + ext in names:
            text = image.with_suffix(ext).read_text(encoding="utf-8", errors="replace").strip()
            return text or None
    if image.stem + ".json" in names:
        try:
            meta = json.loads(image.with_suffix(".json").read_text(encoding="utf-8"))
        except (ValueError, OSError):
            return None
        return alt_from_meta(meta)
    return None


def alt_from_meta(meta) -> str | None:
    if isinstance(meta, dict):
        for col in TEXT_COLUMNS:
            if isinstance(meta.get(col), str) and meta[col].strip():
                return meta[col].strip()
    return None


def _read_list(path: Path, path_column: str | None, text_column: str | None) -> list[tuple[str, str | None]]:
    rows = _load_rows(path)
    if not rows:
        return []
    columns = list(rows[0].keys())
    pcol = path_column or next((c for c in PATH_COLUMNS if c in columns), None)
    if pcol not in columns:
        if "url" in columns and not path_column:
            raise LensError(
                f"{path} is a URL list; download it with img2dataset (--output_format webdataset) "
                "and ingest the shards it writes"
            )
        raise LensError(f"{path}: no path column {pcol or ''!r} among {columns}; pass --path-column NAME")
    tcol = text_column or next((c for c in TEXT_COLUMNS if c in columns), None)
    if text_column and text_column not in columns:
        raise LensError(f"{path}: no text column {text_column!r} among {columns}")
    out = []
    for row in rows:
        value = str(row.get(pcol) or "")
        if value.startswith(("http://", "https://")):
            raise LensError(
                f"{path} lists URLs ({value[:60]}...); download them first with img2dataset "
                "(--output_format webdataset) and ingest the shards it writes"
            )
        file = Path(value) if os.path.isabs(value) else path.parent / value
        alt = row.get(tcol) if tcol else None
        out.append((str(file), alt.strip() if isinstance(alt, str) and alt.strip() else None))
    return out


def _load_rows(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        if suffix == ".jsonl":
            with path.open(encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        with path.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
    except LensError:
        raise
    except Exception as err:
        raise LensError(f"cannot read list {path}: {type(err).__name__}: {err}") from err
