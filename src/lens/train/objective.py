"""Flow-matching objective (REFERENCE 5, 9): logit-normal sigmas, x_t, velocity target, masked MSE.

x_t = (1 - sigma) * x0 + sigma * noise; the model predicts v = noise - x0; the loss is the squared
error averaged over channels and over every valid image token of the micro-batch (text tokens are
not predicted; a pack and a bucket batch of the same samples give the same loss).

Randomness is drawn per sample, in sample order, from a generator the trainer seeds with
(seed, step, micro-step, rank): sigmas first, then each sample's noise. So the draws do not depend on
how samples are laid out (bucket batch or pack) and a resumed run draws exactly what it would have.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from lens.sampling.schedule import logit_normal_mean, sample_training_sigmas
from lens.train.batches import ModelInputs


def step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}/{step}/{micro}/{rank}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def sigma_means(cfg, image_tokens: list[int]) -> Tensor:
    """Per-sample logit-normal mean: fixed, or 1.0 at 256 tokens rising to 1.3 at 4096 (configurable)."""
    if cfg.logit_mean is not None:
        return torch.full((len(image_tokens),), float(cfg.logit_mean))
    means = [
        logit_normal_mean(
            n, cfg.logit_mean_lo, cfg.logit_mean_hi, cfg.logit_mean_lo_tokens, cfg.logit_mean_hi_tokens
        )
        for n in image_tokens
    ]
    return torch.tensor(means, dtype=torch.float32)


def draw_noise(cfg, inputs: ModelInputs, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(sigmas (n,), noise shaped like inputs.x0), drawn on the CPU in sample order."""
    tokens = inputs.image_tokens
    sigmas = sample_training_sigmas(len(tokens), sigma_means(cfg, tokens), cfg.logit_std, generator)  # (n,)
    channels = inputs.x0.shape[-1]
    per_sample = [torch.randn(n, channels, generator=generator) for n in tokens]  # (N_i, C)
    noise = torch.cat(per_sample)[None] if inputs.pack is not None else torch.stack(per_sample)
    return sigmas, noise.to(inputs.x0.device)


def flow_matching_loss(model, inputs: ModelInputs, sigmas: Tensor, noise: Tensor) -> Tensor:
    """Mean squared velocity error over valid image tokens and channels (float32 scalar)."""
    x0 = inputs.x0.float()
    sigmas = sigmas.to(x0.device)
    if inputs.pack is not None:
        counts = torch.tensor(inputs.image_tokens, device=x0.device)
        s = sigmas.repeat_interleave(counts)[None, :, None]  # (1, N, 1)
    else:
        s = sigmas[:, None, None]  # (B, 1, 1)
    x_t = (1.0 - s) * x0 + s * noise  # (B, N, C); s is per token in a pack, so not `noised`
    target = noise - x0
    pred = model(
        x_t,
        inputs.text,
        sigmas,
        image_grid=inputs.grid,
        encoder_attention_mask=inputs.text_mask,
        pack=inputs.pack,
        encoder_places=inputs.places,
    ).sample
    return (pred.float() - target).pow(2).mean()
