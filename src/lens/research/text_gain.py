"""The `val-loss` hook recomputed offline for a run's saved checkpoints (`lens eval text-gain`).

For each checkpoint: the fixed-sample loss with the captions, with the null condition, and the
difference (`eval/text_gain`), on CPU. With the defaults (the hook's 8 samples of the run's own
shards, dense captions, raw weights, the run's precision) the values equal what the run logged at
those steps. Held-out data, brief captions and per-resolution rows turn it into a cheap comparison of
runs that still score at chance on a benchmark (docs/nano-experiments.md):

- `shards`: other shards to score (image shards are encoded with the run's frozen encoders);
- `caption`: condition on the "dense" or the "brief" caption of each sample;
- `sizes`: one row per (height, width), each with the first `n_samples` samples stored at that size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from lens.errors import LensError
from lens.export import load_run, load_trained_text
from lens.resolution import Bucket
from lens.source.spec import open_source
from lens.train.buckets import parse_buckets
from lens.train.encoders import FrozenEncoders
from lens.train.evals import captioned_vs_null, encode_fixed, fixed_samples
from lens.train.presets import load_config


def run_text_gain(
    run_dir: str | Path,
    steps: Sequence[int] = (),
    n_samples: int = 8,
    weights: str = "model",
    shards: str | None = None,
    caption: str = "dense",
    sizes: Sequence[tuple[int, int]] = (),
) -> list[dict]:
    """One row per checkpoint (default: the latest) and size: step, weights, size, losses, text gain."""
    run_dir = Path(run_dir)
    cfg = load_config(str(run_dir / "config.json"))
    shards = cfg.data.shards if shards is None else shards
    # a synthetic-data run wrote its shards inside the run directory: the same source reads them
    source = open_source(shards, cfg.data, run_dir / "data", cfg.train.seed)
    images = source.kind() == "images"  # feature shards need neither the VAE nor the LM
    device = torch.device("cpu")
    encoders = FrozenEncoders(cfg, device, vae=images, text=images)  # a trained LM comes per checkpoint
    buckets = parse_buckets(cfg.data.buckets, cfg.data.batch_size)
    buckets += [Bucket(h, w, 1) for h, w in sizes if (h, w) not in {(b.height, b.width) for b in buckets}]
    raw = {}
    for size in list(sizes) or [None]:
        samples = fixed_samples(source, buckets, cfg.data, cfg.train.seed, n_samples, caption, size)
        if not samples:
            where = "" if size is None else f" stored at {size[0]}x{size[1]}"
            raise LensError(f"no readable sample{where} with a {caption} caption in {shards}")
        raw[size] = samples, len(samples)
    bf16 = cfg.train.precision == "bf16"

    def autocast():  # as the run's hook computed it
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    rows, sets = [], None
    for step in list(steps) or [None]:
        _, model, found, prefix = load_run(run_dir, weights, step)
        trained_text = load_trained_text(run_dir, found)
        if trained_text is not None:  # a run that trained its LM: its captions, its features, per step
            encoders.use_text(*trained_text)
            sets = None
        if sets is None:
            grounded = cfg.model.text_grounding  # as the hook encodes them: a grounded run's token places
            sets = {size: (encode_fixed(s, encoders, device, grounded), n) for size, (s, n) in raw.items()}
        for size, ((inputs, null_inputs), n) in sets.items():
            losses = captioned_vs_null(model, cfg.objective, inputs, null_inputs, autocast)
            label = "mixed" if size is None else f"{size[0]}x{size[1]}"
            rows.append({"step": found, "weights": prefix, "size": label, "samples": n, **losses})
    return rows
