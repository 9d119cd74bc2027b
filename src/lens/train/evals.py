"""Periodic evaluation hooks (`log.evals`), run every `log.eval_every` steps and at step 0.

- `val-loss`: the flow-matching loss of a fixed set of samples (the first ones of the first shard,
  dense captions, no dropout) at fixed sigmas 0.1..0.9 with fixed noise. Unlike the training loss it
  does not jump with the random sigmas of a step, so it shows progress from the first hundred steps.
- `nano-eval`: Nano-Eval (`lens.eval.nano_eval.evaluate`), one image per prompt of its suite, sampled
  with the training model at `log.sample_size` / `sample_steps` / `sample_guidance`, prompted twice:
  with the short prompts (`eval/nano/*`) and with the nano reasoner's dense rewrites
  (`eval/nano-reasoner/*`); logs the per-tag and overall scores. The full 4-image protocol is
  `lens eval nano-run` on an exported pipeline.

Under FSDP every rank runs the hooks (forwards are collective); rank 0 logs.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os

import torch

from lens.data.shards import iter_shard
from lens.train.batches import encode_microbatch
from lens.train.loader import Microbatch
from lens.train.objective import draw_noise, flow_matching_loss
from lens.train.samples import BadSample, decode_sample

log = logging.getLogger("lens.train")
VAL_SIGMAS = (0.1, 0.3, 0.5, 0.7, 0.9)


class ValLoss:
    name = "val-loss"

    def __init__(self, trainer, n_samples: int = 8):
        data_cfg = copy.copy(trainer.cfg.data)
        data_cfg.caption, data_cfg.caption_dropout = "dense", 0.0
        samples = []
        for shard, path in enumerate(trainer.shard_paths):
            for raw in iter_shard(path):
                try:
                    samples.append(
                        decode_sample(raw, shard, 0, trainer.buckets, data_cfg, trainer.cfg.train.seed)
                    )
                except BadSample:
                    continue
                if len(samples) >= n_samples:
                    break
            if len(samples) >= n_samples:
                break
        # encode once; every sample is its own bucket batch (sizes may differ)
        self.inputs = [
            encode_microbatch(Microbatch([s], packed=False), trainer.encoders, trainer.info.device)
            for s in samples
        ]

    @torch.no_grad()
    def __call__(self, trainer) -> dict[str, float]:
        losses = []
        gen = torch.Generator().manual_seed(1234)
        for inputs in self.inputs:
            _, noise = draw_noise(trainer.cfg.objective, inputs, gen)
            for sigma in VAL_SIGMAS:
                with trainer.autocast():
                    loss = flow_matching_loss(trainer.model, inputs, torch.tensor([sigma]), noise)
                losses.append(float(loss))
        return {"eval/val_loss": sum(losses) / max(len(losses), 1)}


class NanoEval:
    name = "nano-eval"

    def __init__(self, trainer):
        try:
            self.module = importlib.import_module("lens.eval.nano_eval")
        except ImportError:
            self.module = None
            log.warning("nano-eval requested but lens.eval.nano_eval is not available; skipping it")

    def __call__(self, trainer) -> dict[str, float]:
        if self.module is None:
            return {}
        values = {}
        workers = min(4, os.cpu_count() or 1)
        for key, rewrite in (("nano", False), ("nano-reasoner", True)):
            scores = self.module.evaluate(
                trainer.generate_images, n_samples=1, rewrite=rewrite, workers=workers
            )
            values.update({f"eval/{key}/{k}": float(v) for k, v in scores.items()})
        return values


HOOKS = {"val-loss": ValLoss, "nano-eval": NanoEval}


def build_hooks(trainer, names) -> list:
    from lens.errors import LensError

    unknown = [n for n in names if n not in HOOKS]
    if unknown:
        raise LensError(f"unknown log.evals {unknown}; available: {', '.join(HOOKS)}")
    return [HOOKS[n](trainer) for n in names]
