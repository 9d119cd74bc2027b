"""`lens finetune`: a folder of captioned images (or shards) -> a LoRA or full fine-tune of a pipeline.

Every stage is the engine's own; OUT holds what each one writes:
1. data (OUT/data/images): `DATA/metadata.jsonl` (diffusers' ImageFolder: `file_name` + `text`) or
   `name.png` next to `name.txt` (kohya) go through `lens data ingest`, the caption written as the
   sample's `caption.txt`; images that do not decode are counted by reason and skipped. An image
   without a caption is an error, before anything is written. DATA may be a source instead (a folder
   of .tar, parquet files, a glob or a brace pattern; `lens.source.spec`): images, or feature
   shards with their `prepare.json`.
2. buckets: each image's aspect ratio snapped to the nearest of the nine Lens ratios, at the area of
   the base's default size (`default_height` x `default_width`); one bucket per size in use.
3. features (OUT/data/features): sets of at most PRECOMPUTE_MAX images are encoded once by `lens
   prepare` with the base's own VAE and LM; larger ones train on the images, encoded online.
4. training (OUT/run): `lens train` on a config derived from BASE/transformer/config.json
   (`model.init_from` and `encoders.source` = BASE), a LoRA (`model.lora_rank`) or the whole denoiser,
   sample grids of the first captions; `resume=True` continues from the latest checkpoint exactly.
5. export (OUT/pipeline): `lens export`, the adapter merged in and also kept on its own in
   OUT/pipeline/lora/pytorch_lora_weights.safetensors. A later run replaces this folder.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from collections import Counter
from pathlib import Path

from lens.errors import LensError
from lens.train.config import (
    CheckpointConfig,
    Config,
    DataConfig,
    EncoderConfig,
    LogConfig,
    OptimConfig,
    TrainConfig,
    apply_overrides,
    set_value,
    validate,
)

log = logging.getLogger("lens.train")
PRECOMPUTE_MAX = 2000  # images; a sample's bf16 text features are tokens x 4 layers x 2880 x 2 bytes
SAMPLE_PROMPTS = 4  # captions drawn in the sample grids
SHARD_SIZE = 1000
MANIFEST = "finetune.json"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_NOT_SKIPPED = ("seen", "written")


def resolve_base(base: str) -> Path:
    """The base pipeline folder: a local one, or a hub id's snapshot (downloaded when not cached)."""
    path = Path(base)
    if not path.exists():
        if not _HUB_ID.match(base) or base.startswith("."):
            raise LensError(
                f"--base {base} does not exist; pass a pipeline folder or a hub id (microsoft/Lens)"
            )
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(base))
        except Exception as err:  # hub errors come in many types; all mean "not available"
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise LensError(f"--base {base} is no local folder and no reachable hub repo ({first})") from None
    parts = ("model_index.json", "transformer/config.json", "vae", "text_encoder", "tokenizer")
    missing = [name for name in parts if not (path / name).exists()]
    if missing:
        raise LensError(f"--base {base} is not a Lens pipeline folder (it lacks {', '.join(missing)})")
    return path


def ingest_folder(data: Path, out: Path) -> dict:
    """Captioned images -> image shards in `out`; returns the ingest counts, summed over shards."""
    from lens.data.ingest import ingest_config, run_ingest
    from lens.data.sources import IMAGE_SUFFIXES, plan_units

    listing = data / "metadata.jsonl"
    inputs = [str(listing if listing.is_file() else data)]
    columns = {"path_column": "file_name", "text_column": "text"} if listing.is_file() else {}
    items = [
        i for u in plan_units(inputs, per_shard=SHARD_SIZE, **columns) if u.kind == "files" for i in u.items
    ]
    bare = [
        path
        for path, alt, *skip in items
        if alt is None and not skip and Path(path).suffix.lower() in IMAGE_SUFFIXES
    ]
    if bare:
        raise LensError(
            f"{len(bare)} of {len(items)} images in {data} have no caption (e.g. {bare[0]}): write NAME.txt "
            "next to each image, or list them in metadata.jsonl with file_name and text"
        )
    config = ingest_config(str(out), fmt="png", alt_is_caption=True)
    run_ingest(inputs, config, per_shard=SHARD_SIZE, **columns)
    counts: Counter = Counter()
    for stats in sorted(out.glob("*.stats.json")):  # every shard's, also those a resumed run skipped
        counts.update(json.loads(stats.read_text())["counts"])
    return dict(counts)


def scan_source(source) -> tuple[list[tuple[int, int]], list[str]]:
    """(height, width) and caption of every captioned, readable sample of an image or feature source."""
    sizes, captions = [], []
    for part in range(len(source.parts)):
        for record in source.records(part):
            size = record.stored_size()
            if record.dense and size:
                sizes.append(size)
                captions.append(record.dense)
    return sizes, captions


def plan_buckets(sizes: list[tuple[int, int]], height: int, width: int, batch_size: int = 1) -> str:
    """`data.buckets` for these images: their aspect ratios snapped to the Lens ratios, at height x width's area."""
    from lens.resolution import PATCH_PIXELS, RATIOS, Bucket, nearest_bucket

    if not sizes:
        raise LensError("no captioned, readable image to train on")

    def side(v: float) -> int:
        return max(PATCH_PIXELS, round(v / PATCH_PIXELS) * PATCH_PIXELS)

    area, candidates = height * width, []
    for ratio in (int(w) / int(h) for w, h in (r.split(":") for r in RATIOS)):  # RATIOS are W:H
        candidates.append(Bucket(side(math.sqrt(area / ratio)), side(math.sqrt(area * ratio)), batch_size))
    used = Counter((b.height, b.width) for b in (nearest_bucket(h, w, candidates) for h, w in sizes))
    return ",".join(f"{h}x{w}:{batch_size}" for h, w in sorted(used))


def finetune_config(base: Path, shards: str, buckets: str, prompts: list[str], *, lora_rank: int,
                    steps: int, run_dir: Path, overrides=()):  # fmt: skip
    """The `lens train` config of a fine-tune: the base's denoiser shape, encoders and sampling defaults."""
    import torch

    index = json.loads((base / "model_index.json").read_text())
    denoiser = json.loads((base / "transformer" / "config.json").read_text())
    cfg = Config(run_dir=str(run_dir))  # no preset: config.json names its base preset, and this has none
    for key in cfg.model.model_kwargs():
        if key in denoiser:
            set_value(cfg, f"model.{key}", denoiser[key])
    cfg.model.init_from, cfg.model.lora_rank = str(base), lora_rank
    cfg.encoders = EncoderConfig(source=str(base))
    cfg.data = DataConfig(
        shards=shards, buckets=buckets, shuffle_buffer=SHARD_SIZE, workers=2,
        world_object_scale=float(index.get("world_object_scale", 1.0)),  # kept in the export
    )  # fmt: skip
    cfg.optim = OptimConfig(lr=1e-4 if lora_rank else 1e-5)  # LoRA's usual rate; full: 10x lower
    # bf16 autocast on GPUs; on CPUs without AMX it is far slower than fp32
    cfg.train = TrainConfig(steps=steps, precision="bf16" if torch.cuda.is_available() else "fp32")
    interval = max(1, steps // 4)
    cfg.checkpoint = CheckpointConfig(interval=interval, keep=2)
    h, w = index.get("default_height", 1024), index.get("default_width", 1024)
    cfg.log = LogConfig(
        every=min(10, steps), sample_every=interval, sample_prompts=tuple(prompts[:SAMPLE_PROMPTS]),
        sample_size=f"{h}x{w}", sample_steps=index.get("default_steps", 28),
        sample_guidance=index.get("default_guidance_scale", 5.0),
    )  # fmt: skip
    return validate(apply_overrides(cfg, list(overrides)))


def prepare_data(data: str, out: Path, base: Path, batch_size: int) -> dict:
    """Stages 1 and 2: the shards to train on, their kind, buckets, sample prompts and skip counts."""
    from lens.source.spec import open_source

    folder = Path(data)
    counts: dict = {}
    if folder.is_dir() and ((folder / "metadata.jsonl").is_file() or not any(folder.glob("*.tar"))):
        counts = ingest_folder(folder, out / "data" / "images")
        data = str(out / "data" / "images")
    elif not folder.is_dir() and not any(c in data for c in "*?[{,") and not folder.is_file():
        raise LensError(f"DATA {data} does not exist; pass a folder of captioned images or shards")
    source = open_source(data, DataConfig())
    kind = source.kind()
    sizes, captions = scan_source(source)
    if kind == "features":  # their latents have the sizes `lens prepare` gave them; so must the buckets
        manifest = Path(source.parts[0]).parent / "prepare.json"
        if not manifest.is_file():
            raise LensError(f"feature shards {data} have no prepare.json beside them (their bucket list)")
        prepared, denoiser = (
            json.loads(manifest.read_text()),
            json.loads((base / "transformer/config.json").read_text()),
        )
        if prepared.get("enc_hidden_dim") != denoiser.get("enc_hidden_dim"):
            raise LensError(f"feature shards {data} were prepared with another text encoder than --base's")
        buckets = prepared["buckets"]
    else:
        index = json.loads((base / "model_index.json").read_text())
        buckets = plan_buckets(
            sizes, index.get("default_height", 1024), index.get("default_width", 1024), batch_size
        )
    skipped = {k: v for k, v in counts.items() if k not in _NOT_SKIPPED}
    return {"shards": data, "kind": kind, "images": len(captions), "skipped": skipped, "buckets": buckets,
            "prompts": captions[:SAMPLE_PROMPTS]}  # fmt: skip


def export_pipeline(run_dir: Path, dest: Path) -> Path:
    """`lens export` into `dest`, replacing an earlier export of this fine-tune (never another folder)."""
    from lens.export import export_run

    if dest.exists():
        if not (dest / "lens_training.json").is_file():
            raise LensError(f"{dest} exists and is no export of a run; move it away")
        shutil.rmtree(dest)
    return export_run(run_dir, dest, lora="merge")


def finetune(data: str, base: str, out: str | Path, *, lora_rank: int = 16, steps: int | None = None,
             batch_size: int = 1, overrides=(), resume: bool = False) -> dict:  # fmt: skip
    """Fine-tune `base` on `data` into `out` (lora_rank=0: the whole denoiser); returns a summary."""
    from lens.train.checkpoint import latest_checkpoint
    from lens.train.loop import train
    from lens.train.presets import load_config

    out, run_dir = Path(out), Path(out) / "run"
    if resume and (run_dir / "config.json").is_file():  # the run's own config: exact resume
        cfg = load_config(
            str(run_dir / "config.json"), [*([f"train.steps={steps}"] if steps else []), *overrides]
        )
        manifest = json.loads((out / MANIFEST).read_text())
    else:
        if not resume and latest_checkpoint(run_dir) is not None:
            raise LensError(
                f"{out} already holds a fine-tune: pass --resume to continue it, or another --out"
            )
        folder = resolve_base(base)
        manifest = prepare_data(data, out, folder, batch_size)
        cfg = finetune_config(folder, manifest["shards"], manifest["buckets"], manifest["prompts"],
                              lora_rank=lora_rank, steps=steps or 1000, run_dir=run_dir, overrides=overrides)  # fmt: skip
        if manifest["kind"] == "images" and manifest["images"] <= PRECOMPUTE_MAX:
            from lens.featurise import prepare_shards

            features = out / "data" / "features"
            if not (features / "prepare.json").is_file():
                manifest["prepare"] = prepare_shards(cfg, manifest["shards"], features)
            manifest.update(shards=str(features), kind="features")
            cfg.data.shards, cfg.data.kind = manifest["shards"], manifest["kind"]
        (out / MANIFEST).write_text(json.dumps({**manifest, "base": str(folder)}, indent=2) + "\n")
    if manifest["skipped"]:
        log.warning(
            "%d files did not decode and were skipped: %s",
            sum(manifest["skipped"].values()),
            manifest["skipped"],
        )
    summary = train(cfg, resume=resume)
    result = {**manifest, "run": summary, "run_dir": run_dir, "pipeline": None, "adapter": None}
    if summary["stopped"]:  # a SIGTERM: checkpoint saved, export when the run is finished
        return result
    result["pipeline"] = export_pipeline(run_dir, out / "pipeline")
    if cfg.model.lora_rank > 0:
        from diffusers.loaders.lora_base import LORA_WEIGHT_NAME_SAFE

        result["adapter"] = result["pipeline"] / "lora" / LORA_WEIGHT_NAME_SAFE
    return result
