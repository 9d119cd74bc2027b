"""What `lens data ingest` can read, turned into work units.

- a folder (recursive, sorted): image files, with optional alt text in a same-stem `.txt` / `.caption`
  / `.json` sidecar; `.tar` shards inside it are read as shards; other unknown files become items that
  fail to decode and are counted as `not_image`. Symlinks are followed only inside the folder: one
  that leaves it (say to /etc/passwd) becomes an item counted as `outside_input` and is never read,
  and a looping or dangling link stays an item so ingest counts it (`symlink_loop`, `missing`);
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
OUTSIDE_INPUT = "outside_input"  # the skip reason of a symlink that leaves its input folder


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


def _scan_folder(root: Path) -> tuple[list[tuple], list[Path]]:
    """Items (path, alt) or, for a link out of the tree, (path, None, OUTSIDE_INPUT); and the shards."""
    items, tars = [], []
    real_root = Path(os.path.realpath(root))
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        # os.walk never descends into a linked folder; one that leaves the tree is still counted
        items += [
            (str(Path(dirpath) / d), None, OUTSIDE_INPUT)
            for d in dirnames
            if _leaves_tree(Path(dirpath) / d, real_root)
        ]
        names = set(filenames)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            suffix = path.suffix.lower()
            if name.startswith(".") or suffix in META_SUFFIXES:
                continue
            if _leaves_tree(path, real_root):
                items.append((str(path), None, OUTSIDE_INPUT))
                continue
            # FIFOs and sockets are not inputs; a looping or dangling link is, so ingest counts it
            if not (path.is_file() or path.is_symlink()):
                continue
            if is_shard(path):
                tars.append(path)
                continue
            items.append((str(path), _sidecar_text(path, names, real_root)))
    return items, tars


def _leaves_tree(path: Path, real_root: Path) -> bool:
    """Whether `path` is a symlink whose target lies outside `real_root` (already resolved)."""
    return path.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(real_root)


def _sidecar_text(image: Path, names: set[str], real_root: Path) -> str | None:
    for ext in TEXT_SIDECARS:
        if image.stem + ext in names and not _leaves_tree(image.with_suffix(ext), real_root):
            text = _read_text(image.with_suffix(ext)).strip()
            return text or None
    sidecar = image.with_suffix(".json")
    if image.stem + ".json" in names and not _leaves_tree(sidecar, real_root):
        try:
            meta = json.loads(_read_text(sidecar))
        except ValueError:
            return None
        return alt_from_meta(meta)
    return None


def _read_text(path: Path) -> str:
    """A sidecar's text; an unreadable one (a looping link, no permission) is no alt text, not an error."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


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
