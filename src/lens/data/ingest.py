"""`lens data ingest`: any pile of images -> normalised WebDataset shards, one per work unit.

Each sample is re-encoded from the decoded RGB pixels (orientation applied, colour converted to sRGB,
metadata such as EXIF GPS dropped) and carries its size and Lens bucket. Files that do not decode are
counted by reason in `<unit>.stats.json`, never fatal.
"""

from __future__ import annotations

import errno
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from lens.data.decode import DEFAULT_MAX_PIXELS, CorruptImage, decode, encode
from lens.data.sample import DENSE_EXT, bucket_label, dump_meta, read_meta
from lens.data.shards import ShardWriter, iter_shard
from lens.data.sources import IMAGE_SUFFIXES, alt_from_meta, plan_units
from lens.data.units import Unit, printable, stats_path, write_json_atomic
from lens.errors import LensError

log = logging.getLogger(__name__)
FORMATS = ("jpg", "png", "webp")
MAX_ERRORS_KEPT = 20  # examples of failures kept per unit in its stats, for the report
_TAR_IMAGE_EXTS = tuple(s.lstrip(".") for s in sorted(IMAGE_SUFFIXES))


def ingest_config(
    out: str,
    *,
    fmt: str = "jpg",
    quality: int = 95,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    alt_is_caption: bool = False,
) -> dict:
    """`alt_is_caption`: the alt text is the training caption (`lens finetune`'s captioned folders), so
    it is also written as the sample's `caption.txt`; curated data gets captions from `lens data caption`."""
    config = {"out": str(out), "format": fmt, "quality": quality, "max_pixels": max_pixels}
    return config | ({"alt_is_caption": True} if alt_is_caption else {})


def ingest_unit(unit: Unit, config: dict) -> dict:
    """Decode, normalise and write one unit's images to `<out>/<unit>.tar`; return its stats."""
    out = Path(config["out"])
    counts: Counter = Counter()
    errors: list[str] = []
    with ShardWriter(out / f"{unit.name}.tar") as writer:
        for idx, (data, alt, source, url) in enumerate(_inputs(unit, counts, errors)):
            counts["seen"] += 1
            try:
                im, info = decode(data, max_pixels=config["max_pixels"])
            except CorruptImage as err:
                _count(counts, errors, err.reason, f"{source}: {err}")
                continue
            w, h = im.size
            meta = {
                "width": w,
                "height": h,
                "bucket": bucket_label(h, w),
                "source": source,
                "alt": alt,
                "orig": info,
            }
            if url:
                meta["url"] = url
            image = encode(im, config["format"], config["quality"])
            sample = {"__key__": f"{unit.name}_{idx:05d}", config["format"]: image, "json": dump_meta(meta)}
            if config.get("alt_is_caption") and alt:
                sample[DENSE_EXT] = alt.encode()
            writer.write(sample)
            counts["written"] += 1
    stats = {"command": "ingest", "unit": unit.name, "counts": dict(counts), "errors": errors}
    write_json_atomic(stats_path(out, unit.name), stats)
    return stats


def _inputs(
    unit: Unit, counts: Counter, errors: list[str]
) -> Iterator[tuple[bytes, str | None, str, str | None]]:
    """(bytes, alt text, source label, url) for every input of the unit, in order."""
    if unit.kind == "files":
        for path, alt, *skip in unit.items:
            if skip:  # decided when the folder was scanned (a link out of the input tree): never read
                _count(counts, errors, skip[0], f"{printable(path)}: {skip[0]}")
                continue
            try:
                data = Path(path).read_bytes()
            except OSError as err:
                reason = "symlink_loop" if err.errno == errno.ELOOP else "missing"
                _count(counts, errors, reason, f"{printable(path)}: {err.strerror or err}")
                continue
            yield data, alt, printable(path), None
        return
    damage: list[str] = []
    for sample in iter_shard(unit.path, damage):
        ext = next((e for e in _TAR_IMAGE_EXTS if e in sample), None)
        source = printable(f"{unit.path}:{sample['__key__']}")
        if ext is None:
            counts["no_image"] += 1
            continue
        meta = read_meta(sample)
        alt = sample["txt"].decode("utf-8", "replace").strip() if sample.get("txt") else alt_from_meta(meta)
        yield sample[ext], alt or None, source, meta.get("url")
    if damage:
        counts["damaged_shards"] += 1
        errors.extend(printable(d) for d in damage[:1])
        log.warning("damaged shard, read what was readable: %s", damage[0])


def _count(counts: Counter, errors: list[str], reason: str, message: str) -> None:
    counts[reason] += 1
    if len(errors) < MAX_ERRORS_KEPT:
        errors.append(message)


def run_ingest(
    inputs: list[str],
    config: dict,
    *,
    per_shard: int = 1000,
    path_column: str | None = None,
    text_column: str | None = None,
    shard=(0, 1),
    workers: int = 1,
    executor: str = "local",
    overwrite: bool = False,
) -> list[dict]:
    """Plan units over all inputs, run this slice's unfinished ones; returns their stats."""
    from lens.data.executor import run_slice
    from lens.data.units import write_provenance

    if config["format"] not in FORMATS:
        raise LensError(f"--format must be one of {', '.join(FORMATS)}, got {config['format']!r}")
    units = plan_units(inputs, per_shard=per_shard, path_column=path_column, text_column=text_column)
    out = Path(config["out"])
    out.mkdir(parents=True, exist_ok=True)
    write_provenance(out, "ingest", inputs, config)
    return run_slice(
        ingest_unit,
        units,
        config,
        out_dir=str(out),
        shard=shard,
        workers=workers,
        executor=executor,
        overwrite=overwrite,
        desc="ingest",
    )
