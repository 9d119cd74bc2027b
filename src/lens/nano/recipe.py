"""`lens nano build`: the whole Lens-Nano model from nothing, in stages that resume where they stopped.

    OUT/components/   tokenizer, LM, VAE (`build_components`), unless an existing folder is given
    OUT/frozen/       the same as a pipeline folder without transformer/ (training's encoders.source),
                      its text encoder the LM turned into a word lookup (`Recipe.text_encoder`)
    OUT/world/        world shards (objects `Recipe.object_scale` x the world's sizes, grounded
                      compact captions), written by `jobs` processes
    OUT/features/     the same samples as VAE latents + LM features (`lens prepare`, `jobs` processes):
                      training then reads tensors instead of running both encoders every step, which
                      made a GPU run CPU-bound at ~250 images/s
    OUT/run/          the denoiser's training run: preset `nano` plus overrides (resumed if present)
    OUT/pipeline/     the exported pipeline, its default CFG set to the sweep's best with the reasoner
    OUT/eval.json     the Nano-Eval rows of that sweep

A stage whose output exists is skipped, so a killed build continues from the last finished stage
(and training from its last checkpoint). The defaults are the shipped Lens-Nano v2's recipe
(docs/nano-experiments.md): the `nano` preset (grounded text) on 8,000 scenes of the world at
128x128, objects 1.8x, word-lookup text features.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from lens.errors import LensError

log = logging.getLogger("lens.nano")

# The shipped model's one size; for the paper's mixed buckets, e.g. 60 % square and 20 % each of
# 96x160 / 160x96: sizes=((128, 128),) * 3 + ((96, 160), (160, 96)) (`size_buckets` trains them all).
TRAIN_SIZES = ((128, 128),)
FEATURE_KEYS = ("encoders.", "model.enc_hidden_dim", "model.selected_layer_index", "data.buckets")


@dataclass
class Recipe:
    components: str | None = None  # reuse this components folder instead of building one
    component_minutes: float = 20.0
    samples: int = 8_000  # world samples (the shipped model saw each 7 times in 3,500 steps of 16)
    world_seed: int = 5
    sizes: tuple[tuple[int, int], ...] = TRAIN_SIZES  # sample i renders at sizes[i % len(sizes)]
    object_scale: float = 1.8  # objects larger than the world's own (docs/nano-experiments.md, 7th session)
    text_encoder: str = "lookup"  # lm: the trained nano LM's features; lookup: word lookup (6th session)
    jobs: int = 0  # world-writing and feature-preparing processes; 0 = all cores
    overrides: list[str] = field(default_factory=list)  # `--set` items for the training config
    guidances: tuple[float, ...] = (2.0, 3.0)
    eval_samples: int = 4  # images per prompt (GenEval's 4)
    evaluate: bool = True
    caption_style: str = "compact"  # the world's dense captions, and the sweep's reasoner rewrites


def _world_part(args: tuple) -> int:
    from lens.world.shards import write_shards

    folder, n, seed, start, style, sizes, scale = args
    kw = dict(sizes=sizes, start=start, caption_style=style, object_scale=scale)
    write_shards(folder, n, seed=seed, shard_size=1000, **kw)
    return n


def write_world(
    out: Path,
    n: int,
    seed: int,
    jobs: int,
    style: str = "compact",
    sizes=TRAIN_SIZES,
    object_scale: float = 1.0,
) -> list[str]:
    """Samples 0..n-1 of the world with `seed`, dense captions in `style`, at `sizes` (cycled) and
    `object_scale`, split over `jobs` processes (out/part-XX/)."""
    done = out / "done.json"
    spec = {
        "samples": n, "seed": seed, "sizes": [list(s) for s in sizes], "caption_style": style,
        "object_scale": object_scale,
    }  # fmt: skip
    if done.is_file() and json.loads(done.read_text()) == spec:
        return sorted(str(p) for p in out.glob("part-*/*.tar"))
    if out.exists():
        shutil.rmtree(out)  # a partial or different set: write it again
    jobs = max(1, min(jobs or os.cpu_count() or 1, n))
    bounds = [n * j // jobs for j in range(jobs + 1)]
    parts = [
        (str(out / f"part-{j:02d}"), bounds[j + 1] - bounds[j], seed, bounds[j], style, sizes, object_scale)
        for j in range(jobs)
        if bounds[j + 1] > bounds[j]
    ]
    with ProcessPoolExecutor(len(parts), mp_context=get_context("spawn")) as pool:
        written = sum(pool.map(_world_part, parts))
    done.write_text(json.dumps(spec) + "\n")
    log.info("world: %d samples in %d processes -> %s", written, len(parts), out)
    return sorted(str(p) for p in out.glob("part-*/*.tar"))


def _prepare_part(args: tuple) -> int:
    import torch

    from lens.featurise import prepare_shards
    from lens.train.presets import load_config

    items, source, folder, rank, world = args
    torch.set_num_threads(1)  # one thread per process: small ops scale badly
    counts = prepare_shards(load_config("nano", items), source, folder, rank=rank, world=world, chunk=64)
    return counts["samples"]


def prepare_features(out: Path, world_dir: Path, items: list[str], jobs: int) -> None:
    """Encode every world shard once (rank r of `jobs` takes shards r, r + jobs, ...)."""
    done = out / "done.json"
    encoding = [i for i in items if i.startswith(FEATURE_KEYS)]  # what changes the features
    spec = {"world": json.loads((world_dir / "done.json").read_text()), "config": encoding}
    if done.is_file() and json.loads(done.read_text()) == spec:
        return
    if out.exists():
        shutil.rmtree(out)
    source = f"{world_dir}/part-*/*.tar"
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(list(world_dir.glob("part-*/*.tar")))))
    parts = [(items, source, str(out), r, jobs) for r in range(jobs)]
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        written = sum(pool.map(_prepare_part, parts))
    done.write_text(json.dumps(spec) + "\n")
    log.info("features: %d samples in %d processes -> %s", written, jobs, out)


def component_settings(components: Path) -> list[str]:
    """The overrides a denoiser on these components needs (their manifest's `denoiser_settings`)."""
    from lens.nano.build import MANIFEST

    s = json.loads((components / MANIFEST).read_text())["denoiser_settings"]
    layers = ",".join(str(i) for i in s["selected_layer_index"])
    size = f"{s['native_size']}x{s['native_size']}"
    return [
        f"model.enc_hidden_dim={s['enc_hidden_dim']}",
        f"model.selected_layer_index={layers}",
        f"encoders.max_text_tokens={s['max_text_tokens']}",
        f"log.sample_size={size}",
    ]


def size_buckets(sizes) -> list[str]:
    """The `data.buckets` override that trains every world size (none for the preset's own 128x128)."""
    from lens.train.buckets import parse_buckets
    from lens.train.presets import load_config

    if tuple(map(tuple, sizes)) == TRAIN_SIZES:
        return []
    batch = parse_buckets(load_config("nano").data.buckets)[0].batch_size
    return ["data.buckets=" + ",".join(f"{h}x{w}:{batch}" for h, w in dict.fromkeys(map(tuple, sizes)))]


def train_config(out: Path, overrides: list[str]):
    from lens.train.presets import load_config

    base = [f"encoders.source={out / 'frozen'}", f"data.shards={out / 'features'}"]
    cfg = load_config("nano", base + list(overrides))
    cfg.run_dir = str(out / "run")
    return cfg


def build(out_dir: str | Path, recipe: Recipe) -> dict:
    """Run every stage not yet done; returns {"pipeline": path, "rows": eval rows, "guidance": best}."""
    from lens.export import export_run
    from lens.nano.build import MANIFEST, build_components, plan_for_budget
    from lens.nano.bundle import folder_mb, frozen_folder, set_defaults
    from lens.train.checkpoint import latest_checkpoint
    from lens.train.loop import train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    components = Path(recipe.components) if recipe.components else out / "components"
    if not (components / MANIFEST).is_file():
        if recipe.components:
            raise LensError(f"{components} has no {MANIFEST}: give a `lens nano build-components` folder")
        minutes = recipe.component_minutes
        plan = plan_for_budget(minutes)
        if recipe.text_encoder == "lookup":  # the lookup replaces the LM's weights: do not train it
            plan = dataclasses.replace(plan, lm_steps=2)
        build_components(components, plan=plan, minutes=minutes, log=log.info)
    world = [f"data.caption_style={recipe.caption_style}", f"data.world_object_scale={recipe.object_scale}"]
    overrides = [*component_settings(components), *world, *size_buckets(recipe.sizes), *recipe.overrides]
    if not (out / "frozen" / "model_index.json").is_file():
        shutil.rmtree(out / "frozen", ignore_errors=True)
        frozen_folder(components, out / "frozen", text_encoder=recipe.text_encoder)
    write_world(
        out / "world", recipe.samples, recipe.world_seed, recipe.jobs, recipe.caption_style, recipe.sizes,
        recipe.object_scale,
    )  # fmt: skip
    prepare_features(
        out / "features", out / "world", [f"encoders.source={out / 'frozen'}", *overrides], recipe.jobs
    )

    cfg = train_config(out, overrides)
    train(cfg, resume=latest_checkpoint(cfg.run_dir) is not None)

    pipeline = out / "pipeline"
    shutil.rmtree(pipeline, ignore_errors=True)
    export_run(cfg.run_dir, pipeline, dtype="float32")
    set_defaults(pipeline, default_steps=20, default_guidance_scale=recipe.guidances[0])
    result = {"pipeline": str(pipeline), "size_mb": folder_mb(pipeline), "rows": [], "guidance": None}
    if recipe.evaluate:
        result.update(evaluate_pipeline(pipeline, recipe))
        set_defaults(pipeline, default_guidance_scale=result["guidance"])
        (out / "eval.json").write_text(json.dumps(result["rows"], indent=2) + "\n")
    return result


def evaluate_pipeline(pipeline: Path, recipe: Recipe) -> dict:
    """The CFG sweep (reasoner and short prompts) at the native size; picks the best CFG with the reasoner."""
    import torch

    from lens.eval.sweep import settings, sweep
    from lens.inference import load_pipeline

    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = load_pipeline(str(pipeline), device=device, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    grid = settings(recipe.guidances, [(128, 128)], [True, False])
    workers = max((os.cpu_count() or 1) - 1, 0)
    rows = sweep(
        pipe, grid, n_samples=recipe.eval_samples, workers=workers, caption_style=recipe.caption_style
    )
    best = max((r for r in rows if r["reasoner"]), key=lambda r: r["overall"])
    return {"rows": rows, "guidance": best["guidance"]}
