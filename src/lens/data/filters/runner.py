"""`lens data filter`: stream each shard through the stages in order, record every score, count.

Phase 1 (one work unit per input shard, parallel): decode, run stages 1-8 on batches, write survivors
with `filters` scores in their metadata, `<unit>.rejects.jsonl` (key, stage, score) and a few example
thumbnails per outcome. With near-dup on, phase 1 also stores embeddings and writes `<unit>.partial.tar`;
phase 2 (`finalize.py`, this process) decides duplicates across all of the slice's shards in order and
phase 3 rewrites the partial shards without them.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from lens.data.decode import DEFAULT_MAX_PIXELS, CorruptImage, decode
from lens.data.filters import STAGE_ORDER
from lens.data.filters.base import Item, Stage, round_score
from lens.data.filters.dedup import DEDUP_MAX, FAISS_ABOVE
from lens.data.filters.image_stats import (
    CLARITY_MIN,
    ENTROPY_MIN,
    LUMA_HIGH,
    LUMA_LOW,
    MIN_AREA,
    Clarity,
    Corrupt,
    Entropy,
    Luminance,
    MinArea,
)
from lens.data.filters.model_stages import AESTHETIC_MIN, NSFW_LABELS, WATERMARK_LABELS
from lens.data.filters.models import cached_embeddings
from lens.data.sample import dump_meta, image_ext, read_meta
from lens.data.shards import ShardWriter, iter_shard
from lens.data.units import Unit, stats_path, write_json_atomic
from lens.errors import LensError

log = logging.getLogger(__name__)
# JPEGs above 4x the statistics' area decode at 1/2..1/8 scale (2-4x faster). DCT scaling is a bit
# smoother than PIL's bilinear: clarity reads 2-14% lower on such JPEGs (tests bound it at 20%).
DRAFT_AREA = 4 * 512 * 512
MODEL_STAGES = {
    "nsfw": "nsfw_model",
    "aesthetic": "aesthetic_model",
    "watermark": "watermark_model",
    "near_dup": "dedup_model",
}
_STAGES: dict[str, list[Stage]] = {}


def filter_config(out: str, **overrides) -> dict:
    config = {
        "out": str(out),
        "stages": None,  # None = every stage that can run
        "min_area": MIN_AREA,
        "clarity_min": CLARITY_MIN,
        "entropy_min": ENTROPY_MIN,
        "luma_low": LUMA_LOW,
        "luma_high": LUMA_HIGH,
        "nsfw_model": None,
        "nsfw_labels": list(NSFW_LABELS),
        "nsfw_max": 0.5,
        "aesthetic_model": None,
        "aesthetic_head": None,
        "aesthetic_min": AESTHETIC_MIN,
        "watermark_model": None,
        "watermark_labels": list(WATERMARK_LABELS),
        "watermark_max": 0.5,
        "dedup_model": None,
        "dedup_max": DEDUP_MAX,
        "dedup_faiss_above": FAISS_ABOVE,
        "device": "cpu",
        "batch_size": 32,
        "max_pixels": DEFAULT_MAX_PIXELS,
        "examples": 2,
    }
    unknown = set(overrides) - set(config)
    if unknown:
        raise LensError(f"unknown filter options {sorted(unknown)}")
    config.update(overrides)
    return config


def active_stages(config: dict) -> tuple[list[str], dict[str, str]]:
    """(stage names to run, in order; {skipped stage: why}). Asking for a model stage without a model fails."""
    wanted = config["stages"] or list(STAGE_ORDER)
    bad = [s for s in wanted if s not in STAGE_ORDER]
    if bad:
        raise LensError(f"unknown stages {bad}; choose from {', '.join(STAGE_ORDER)}")
    run, skipped = [], {}
    for name in STAGE_ORDER:
        if name not in wanted and name != "corrupt":  # every later stage needs a decoded image
            skipped[name] = "not selected (--stages)"
        elif name in MODEL_STAGES and not config[MODEL_STAGES[name]]:
            if config["stages"]:
                flag = MODEL_STAGES[name].replace("_", "-")
                raise LensError(f"stage {name} was asked for but has no model; pass --{flag}")
            skipped[name] = f"no --{MODEL_STAGES[name].replace('_', '-')} given"
        else:
            run.append(name)
    return run, skipped


def build_stages(config: dict) -> list[Stage]:
    """Stage objects for the active stages (models loaded once per process)."""
    key = json.dumps({k: v for k, v in config.items() if k != "out"}, sort_keys=True)
    if key in _STAGES:
        return _STAGES[key]
    from lens.data.filters.model_stages import AestheticStage, ClassifierStage

    c, dev = config, config["device"]
    make = {
        "corrupt": lambda: Corrupt(),
        "area": lambda: MinArea(c["min_area"]),
        "nsfw": lambda: ClassifierStage("nsfw", c["nsfw_model"], c["nsfw_labels"], c["nsfw_max"], dev),
        "aesthetic": lambda: AestheticStage(
            c["aesthetic_model"], c["aesthetic_head"], c["aesthetic_min"], dev
        ),
        "watermark": lambda: ClassifierStage(
            "watermark", c["watermark_model"], c["watermark_labels"], c["watermark_max"], dev
        ),
        "clarity": lambda: Clarity(c["clarity_min"]),
        "entropy": lambda: Entropy(c["entropy_min"]),
        "luminance": lambda: Luminance(c["luma_low"], c["luma_high"]),
        "near_dup": lambda: EmbedForDedup(c["dedup_model"], dev, c["dedup_max"]),
    }
    _STAGES[key] = [make[name]() for name in active_stages(config)[0]]
    return _STAGES[key]


class EmbedForDedup(Stage):
    """Phase-1 half of near-dup: embeds survivors; decisions happen across shards in phase 2."""

    name = "near_dup"

    def __init__(self, model_id: str, device: str, threshold: float):
        self.model_id, self.device = model_id, device
        self.rule = f"drop cosine > {threshold} to an earlier kept image ({model_id})"

    def embed(self, items: list[Item]) -> np.ndarray:
        return cached_embeddings(items, self.model_id, self.device)


def make_item(sample: dict, max_pixels: int) -> Item:
    item = Item(key=sample["__key__"], sample=sample, meta=read_meta(sample))
    ext = image_ext(sample)
    if ext is None:
        item.error = "no_image"
        return item
    try:
        item.image, info = decode(sample[ext], max_pixels=max_pixels, draft_area=DRAFT_AREA)
        item.size = (info["width"], info["height"])
    except CorruptImage as err:
        item.error = err.reason
    return item


def _batches(iterable, n: int):
    batch = []
    for x in iterable:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


MAX_EXAMPLES = 16  # thumbnails per outcome in all: 800k shards must not write millions of files


def save_example(out: Path, outcome: str, item: Item) -> None:
    folder = out / "examples" / outcome
    if item.image is None or (folder.is_dir() and sum(1 for _ in folder.iterdir()) >= MAX_EXAMPLES):
        return
    thumb = item.image.copy()
    thumb.thumbnail((160, 160))
    folder.mkdir(parents=True, exist_ok=True)
    thumb.save(folder / f"{item.key.replace('/', '_')}.png")


def filter_unit(unit: Unit, config: dict) -> dict:
    """Phase 1 for one input shard; returns (and writes) its stats."""
    out = Path(config["out"])
    stages = build_stages(config)
    dedup = next((s for s in stages if isinstance(s, EmbedForDedup)), None)
    per_stage = {s.name: Counter() for s in stages}
    counts: Counter = Counter()
    examples: Counter = Counter()
    damage: list[str] = []
    keys, embs, rejects = [], [], []
    target = out / (f"{unit.name}.partial.tar" if dedup else f"{unit.name}.tar")
    with ShardWriter(target) as writer:
        for batch in _batches(iter_shard(unit.path, damage), config["batch_size"]):
            alive = [make_item(s, config["max_pixels"]) for s in batch]
            counts["seen"] += len(alive)
            for it in alive:
                if it.error:
                    counts[it.error] += 1
            for stage in stages:
                if stage is dedup:
                    break
                scores = stage.score_batch(alive)
                survivors = []
                for it, score in zip(alive, scores):
                    ok = bool(stage.keep(score))
                    it.meta.setdefault("filters", {})[stage.name] = {"score": round_score(score), "keep": ok}
                    per_stage[stage.name].update(seen=1, dropped=int(not ok), unscored=int(score is None))
                    if ok:
                        survivors.append(it)
                        continue
                    rejects.append(
                        {"key": it.key, "stage": stage.name, "score": round_score(score), "error": it.error}
                    )
                    if examples[stage.name] < config["examples"]:
                        examples[stage.name] += 1
                        save_example(out, stage.name, it)
                alive = survivors
            if dedup and alive:
                keys += [it.key for it in alive]
                embs.append(dedup.embed(alive))
            for it in alive:
                sample = {k: v for k, v in it.sample.items() if k != "__url__"}
                sample["json"] = dump_meta(it.meta)
                writer.write(sample)
                counts["written"] += 1
                if not dedup and examples["kept"] < config["examples"]:
                    examples["kept"] += 1
                    save_example(out, "kept", it)
    if damage:
        counts["damaged_shards"] += 1
    _write_jsonl(out / f"{unit.name}.rejects.jsonl", rejects)
    stats = {
        "command": "filter",
        "unit": unit.name,
        "counts": dict(counts),
        "stages": {k: dict(v) for k, v in per_stage.items()},
        "errors": damage[:5],
    }
    if dedup:
        emb = np.concatenate(embs) if embs else np.zeros((0, 1), np.float32)
        np.savez(out / f"{unit.name}.partial.npz", keys=np.array(keys, dtype=str), emb=emb.astype(np.float32))
        write_json_atomic(out / f"{unit.name}.partial.json", stats)
    else:
        write_json_atomic(stats_path(out, unit.name), stats)
    return stats


def _write_jsonl(path: Path, rows: list[dict], mode: str = "w") -> None:
    with path.open(mode, encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
