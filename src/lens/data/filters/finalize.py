"""Filter driver: phase 1 over the slice's shards, then near-dup decisions across them (phases 2-3).

Near-duplicates are decided over everything one invocation (one `--shard i/N` slice) sees, in shard
order, plus the kept embeddings of shards finished by earlier runs (`<unit>.emb.npz`). For one global
pass over a sharded corpus, run the cheap stages sharded and then `--stages near_dup` in one job.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from lens.data.executor import run_slice
from lens.data.filters.base import Item, round_score
from lens.data.filters.dedup import NearDupIndex
from lens.data.filters.runner import _write_jsonl, active_stages, filter_unit, save_example
from lens.data.sample import dump_meta, image_ext, read_meta
from lens.data.shards import ShardWriter, iter_shard, list_shards
from lens.data.units import Unit, is_done, select, stats_path, write_json_atomic, write_provenance
from lens.errors import LensError

log = logging.getLogger(__name__)


def plan_filter_units(inputs: list[str]) -> list[Unit]:
    shards = [s for d in inputs for s in list_shards(d)]
    units = [Unit(s.name.removesuffix(".tar"), "tar", path=str(s)) for s in shards]
    if len({u.name for u in units}) != len(units):
        raise LensError("two input shards share a name; filter one input folder at a time")
    return units


def run_filter(
    inputs: list[str],
    config: dict,
    *,
    shard=(0, 1),
    workers: int = 1,
    executor: str = "local",
    overwrite=False,
) -> dict:
    """Run the whole filter for this slice; returns a summary (counts per stage, skipped stages)."""
    out = Path(config["out"])
    out.mkdir(parents=True, exist_ok=True)
    run, skipped = active_stages(config)
    for name, why in skipped.items():
        print(f"filter: stage {name} skipped: {why}")
    write_provenance(out, "filter", inputs, {**config, "active": run, "skipped": skipped})
    units = plan_filter_units(inputs)
    dedup = "near_dup" in run
    mine = select(units, shard)
    # with near-dup, a unit whose phase-1 output waits for phase 2 needs no phase 1 again
    waiting = set() if overwrite else {u.name for u in mine if (out / f"{u.name}.partial.json").is_file()}
    run_slice(
        filter_unit,
        [u for u in mine if u.name not in waiting],
        config,
        out_dir=str(out),
        workers=workers,
        executor=executor,
        overwrite=overwrite,
        desc="filter",
    )
    if dedup:
        finalize_near_dup(out, mine, config)
    return {"active": run, "skipped": skipped, "units": len(mine)}


def finalize_near_dup(out: Path, units: list[Unit], config: dict) -> None:
    index = NearDupIndex(config["dedup_max"], config["dedup_faiss_above"])
    for unit in units:
        partial = out / f"{unit.name}.partial.npz"
        kept_file = out / f"{unit.name}.emb.npz"
        if not partial.is_file():
            if is_done(out, unit.name) and kept_file.is_file():
                with np.load(kept_file, allow_pickle=False) as z:
                    index.add_context(z["emb"])
            continue
        with np.load(partial, allow_pickle=False) as z:
            keys, emb = [str(k) for k in z["keys"]], z["emb"]
        scores, keep = index.decide(emb) if len(keys) else ([], [])
        decision = dict(zip(keys, zip(scores, keep)))
        _rewrite(out, unit, decision, config)
        kept = [i for i, k in enumerate(keep) if k]
        np.savez(kept_file, keys=np.array([keys[i] for i in kept], dtype=str), emb=emb[kept])
        partial.unlink()
    if index.uses_faiss:
        log.info("near-dup: FAISS HNSW index over %d kept images", index.size)


def _rewrite(out: Path, unit: Unit, decision: dict, config: dict) -> None:
    import json

    stats = json.loads((out / f"{unit.name}.partial.json").read_text())
    counter: Counter = Counter()
    rejects, examples = [], Counter()
    src = out / f"{unit.name}.partial.tar"
    with ShardWriter(out / f"{unit.name}.tar") as writer:
        for sample in iter_shard(src):
            meta = read_meta(sample)
            score, ok = decision.get(sample["__key__"], (None, True))
            meta.setdefault("filters", {})["near_dup"] = {"score": round_score(score), "keep": ok}
            counter.update(seen=1, dropped=int(not ok), unscored=int(score is None))
            outcome = "kept" if ok else "near_dup"
            if examples[outcome] < config["examples"]:
                examples[outcome] += 1
                _example(out, outcome, sample)
            if not ok:
                rejects.append({"key": sample["__key__"], "stage": "near_dup", "score": round_score(score)})
                continue
            sample = {k: v for k, v in sample.items() if k != "__url__"}
            sample["json"] = dump_meta(meta)
            writer.write(sample)
    stats["stages"]["near_dup"] = dict(counter)
    stats["counts"]["written"] = counter["seen"] - counter["dropped"]
    _write_jsonl(out / f"{unit.name}.rejects.jsonl", rejects, mode="a")
    write_json_atomic(stats_path(out, unit.name), stats)
    src.unlink()
    (out / f"{unit.name}.partial.json").unlink()


def _example(out: Path, outcome: str, sample: dict) -> None:
    from lens.data.decode import CorruptImage, decode

    try:
        image, _ = decode(sample[image_ext(sample)], draft_area=256 * 256)
    except (CorruptImage, KeyError):
        return
    save_example(out, outcome, Item(key=sample["__key__"], sample=sample, meta={}, image=image))
