"""Periodic evaluation hooks (`log.evals`), run every `log.eval_every` steps and at step 0.

- `val-loss`: the flow-matching loss of a fixed set of samples (the first ones of the source's first part,
  dense captions, no dropout) at fixed sigmas 0.1..0.9 with fixed noise. Unlike the training loss it
  does not jump with the random sigmas of a step, so it shows progress from the first hundred steps.
  The same samples and noise under the null condition give `eval/val_loss_null`, and
  `eval/text_gain` = null - captioned: how much the caption helps the denoiser. It is ~0 until the
  model reads its text, and it moves long before Nano-Eval leaves chance level.
- `gate`: the colour/shape gate (`lens.eval.gates`): "a photo of a {colour} {shape}" for every
  chromatic colour x shape x 2 seeds, sampled like the previews; logs `eval/gate/colour|shape|both`.
- `colour-share`: the colour-word share of the text features after the denoiser's `txt_in`
  (`lens.research.colour_share`) on 32 held-out probe scenes: how much of a colour token the colour word decides.
- `nano-eval`: Nano-Eval (`lens.eval.nano_eval.evaluate`), one image per prompt of its suite, sampled
  with the training model at `log.sample_size` / `sample_steps` / `sample_guidance`, prompted twice:
  with the short prompts (`eval/nano/*`) and with the nano reasoner's dense rewrites
  (`eval/nano-reasoner/*`); logs the per-tag and overall scores. The full 4-image protocol is
  `lens eval nano-run` on an exported pipeline.

Under FSDP every rank runs the hooks (forwards are collective); rank 0 logs.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os

import torch

from lens.source.base import BadSample, Source
from lens.train.batches import encode_microbatch
from lens.train.objective import draw_noise, flow_matching_loss
from lens.train.samples import Microbatch, decode_sample

log = logging.getLogger("lens.train")
VAL_SIGMAS = (0.1, 0.3, 0.5, 0.7, 0.9)


def fixed_samples(
    source: Source, buckets, data_cfg, seed: int, n: int, caption: str = "dense", size=None
) -> list:
    """The first `n` readable samples of the source, with their `caption` ("dense" | "brief"), no dropout.

    `size` (height, width) keeps only samples stored at exactly that size (no resizing), so a loss can
    be read per resolution; the buckets must then include that size.
    """
    data_cfg = copy.copy(data_cfg)
    data_cfg.caption, data_cfg.caption_dropout = caption, 0.0
    samples = []
    for part in range(len(source.parts)):
        for record in source.records(part):
            try:
                sample = decode_sample(record, part, 0, buckets, data_cfg, seed)
            except BadSample:
                continue
            if size is not None and sample.stored_size != tuple(size):
                continue
            samples.append(sample)
            if len(samples) >= n:
                return samples
    return samples


def encode_fixed(samples, encoders, device, grounded: bool = False) -> tuple[list, list]:
    """Model inputs of each sample (its own bucket batch: sizes may differ), captioned and null;
    `grounded`: with the captions' token places (`model.text_grounding`)."""

    def encode(s):
        return encode_microbatch(Microbatch([s], packed=False), encoders, device, grounded)

    return [encode(s) for s in samples], [
        encode(dataclasses.replace(s, text=None, caption=None)) for s in samples
    ]


@torch.no_grad()
def captioned_vs_null(model, objective, inputs, null_inputs, autocast=contextlib.nullcontext) -> dict:
    """Mean loss at VAL_SIGMAS with fixed noise, with and without the captions, and their difference."""
    losses, null_losses = [], []
    gen = torch.Generator().manual_seed(1234)
    for batch, null_batch in zip(inputs, null_inputs):
        _, noise = draw_noise(objective, batch, gen)
        for sigma in VAL_SIGMAS:
            with autocast():
                for b, out in ((batch, losses), (null_batch, null_losses)):
                    out.append(float(flow_matching_loss(model, b, torch.tensor([sigma]), noise)))
    val, null = (sum(v) / max(len(v), 1) for v in (losses, null_losses))
    return {"eval/val_loss": val, "eval/val_loss_null": null, "eval/text_gain": null - val}


class ValLoss:
    name = "val-loss"

    def __init__(self, trainer, n_samples: int = 8):
        cfg = trainer.cfg
        caption = "brief" if cfg.data.caption == "brief" else "dense"  # the style the run trains on
        self.samples = fixed_samples(
            trainer.source, trainer.buckets, cfg.data, cfg.train.seed, n_samples, caption
        )
        self.grounded = cfg.model.text_grounding
        self.inputs, self.null_inputs = encode_fixed(
            self.samples, trainer.encoders, trainer.info.device, self.grounded
        )

    def __call__(self, trainer) -> dict[str, float]:
        if trainer.encoders.text_trained:  # the caption features change as the LM trains
            with torch.no_grad():
                self.inputs, self.null_inputs = encode_fixed(
                    self.samples, trainer.encoders, trainer.info.device, self.grounded
                )
        return captioned_vs_null(
            trainer.model, trainer.cfg.objective, self.inputs, self.null_inputs, trainer.autocast
        )


class NanoEval:
    name = "nano-eval"

    def __init__(self, trainer):
        from lens.eval.nano_eval import evaluate  # the eval stack (scipy, scikit-image) only when asked

        self.evaluate = evaluate

    def __call__(self, trainer) -> dict[str, float]:
        values = {}
        workers = min(4, os.cpu_count() or 1)
        style = trainer.cfg.data.caption_style
        for key, rewrite in (("nano", False), ("nano-reasoner", True)):
            scores = self.evaluate(
                trainer.generate_images, n_samples=1, rewrite=rewrite, workers=workers, caption_style=style,
                object_scale=trainer.cfg.data.world_object_scale,
            )  # fmt: skip
            values.update({f"eval/{key}/{k}": float(v) for k, v in scores.items()})
        return values


class Gate:
    name = "gate"

    def __init__(self, trainer):
        pass

    def __call__(self, trainer) -> dict[str, float]:
        from lens.eval.gates import colour_shape_gate

        scores = colour_shape_gate(trainer.generate_images)
        return {f"eval/gate/{k}": float(v) for k, v in scores.items() if k != "n"}


class ColourShare:
    name = "colour-share"

    def __init__(self, trainer):
        from lens.research.probes import probe_scenes

        self.probes = probe_scenes(32, style=trainer.cfg.data.caption_style)

    def __call__(self, trainer) -> dict[str, float]:
        from lens.research.colour_share import colour_word_share

        enc = trainer.encoders
        enc.load_text()

        def encode(captions):
            feats = enc.encode_text(captions)  # valid tokens per caption; equal lengths when comparable
            lengths = {f.shape[0] for f in feats}
            n = max(lengths)
            out = torch.zeros(len(feats), n, *feats[0].shape[1:], device=feats[0].device)
            mask = torch.zeros(len(feats), n, dtype=torch.bool, device=feats[0].device)
            for i, f in enumerate(feats):
                out[i, : f.shape[0]], mask[i, : f.shape[0]] = f, True
            return out, mask

        with torch.no_grad(), trainer.autocast():
            result = colour_word_share(encode, trainer.model.embed_text, self.probes)
        return {"eval/colour_share": result["share"]}


HOOKS = {"val-loss": ValLoss, "nano-eval": NanoEval, "gate": Gate, "colour-share": ColourShare}


def build_hooks(trainer, names) -> list:
    from lens.errors import LensError

    unknown = [n for n in names if n not in HOOKS]
    if unknown:
        raise LensError(f"unknown log.evals {unknown}; available: {', '.join(HOOKS)}")
    return [HOOKS[n](trainer) for n in names]
