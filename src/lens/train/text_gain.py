"""The `val-loss` hook recomputed offline for a run's saved checkpoints (`lens eval text-gain`).

For each checkpoint: the fixed-sample loss with the dense captions, with the null condition, and the
difference (`eval/text_gain`), on CPU. With the defaults (the hook's 8 samples, raw weights, the
run's precision) the values equal what the run logged at those steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from lens.train.buckets import parse_buckets
from lens.train.config import load_config
from lens.train.encoders import FrozenEncoders
from lens.train.evals import captioned_vs_null, encode_fixed, fixed_samples
from lens.train.export import load_run
from lens.train.loop import detect_kind
from lens.train.samples import expand_shards


def run_text_gain(
    run_dir: str | Path, steps: Sequence[int] = (), n_samples: int = 8, weights: str = "model"
) -> list[dict]:
    """One row per checkpoint (default: the latest): step, weights, val loss, null loss, text gain."""
    run_dir = Path(run_dir)
    cfg = load_config(str(run_dir / "config.json"))
    # a synthetic-data run wrote its shards inside the run directory
    spec = str(run_dir / "data" / "synthetic") if cfg.data.shards == "synthetic" else cfg.data.shards
    paths = expand_shards(spec)
    images = detect_kind(paths) == "images"  # feature shards need neither the VAE nor the LM
    device = torch.device("cpu")
    encoders = FrozenEncoders(cfg, device, vae=images, text=images)
    buckets = parse_buckets(cfg.data.buckets, cfg.data.batch_size)
    samples = fixed_samples(paths, buckets, cfg.data, cfg.train.seed, n_samples)
    inputs, null_inputs = encode_fixed(samples, encoders, device)
    bf16 = cfg.train.precision == "bf16"

    def autocast():  # as the run's hook computed it
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    rows = []
    for step in list(steps) or [None]:
        _, model, found, prefix = load_run(run_dir, weights, step)
        losses = captioned_vs_null(model, cfg.objective, inputs, null_inputs, autocast)
        rows.append({"step": found, "weights": prefix, **losses})
    return rows
