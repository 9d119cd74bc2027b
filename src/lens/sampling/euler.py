"""The one Euler sampling loop: flow-matching steps of the denoiser on the shifted schedule, with CFG.

`LensPipeline.__call__` and the trainer's previews / sampled evaluations (`lens.train.previews`) both
sample through `euler_sample`, so a training preview is drawn exactly as the exported pipeline would
draw it. Each step: the conditional velocity, then (guidance scale > 1) the unconditional one and
`apply_cfg`, then `scheduler.step` (x <- x + (sigma_next - sigma) * v, in float32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from lens.sampling.guidance import apply_cfg

# (latents (B, N, C), text embeds (B, S, L, D), text mask (B, S) or None, timestep 0..1000) -> (B, N, C) fp32;
# called with `places=` (B, S, 2) as well when the conditions are grounded (`Conditions.places`)
Velocity = Callable[..., Tensor]


@dataclass
class Conditions:
    """The text of both branches. A step callback may replace `embeds` / `null_embeds` between steps.

    The unconditional branch is usually zero text tokens: `null_embeds` of shape (B, 0, L, D).
    """

    embeds: Tensor  # (B, S, L, D)
    mask: Tensor | None  # (B, S) bool; None = no padding
    null_embeds: Tensor  # (B, S', L, D)
    null_mask: Tensor | None  # (B, S') bool or None
    places: Tensor | None = None  # (B, S, 2) grounded places of `embeds`' tokens (`lens.text.grounding`)


def mask_or_none(mask: Tensor | None) -> Tensor | None:
    """Drop an all-true text mask so attention runs unmasked (fused kernels)."""
    return None if mask is None or bool(mask.all()) else mask


def denoiser_velocity(
    model,
    latents: Tensor,
    embeds: Tensor,
    mask: Tensor | None,
    t: Tensor,
    grid: tuple[int, int],
    input_dtype: torch.dtype | None = None,
    autocast: contextlib.AbstractContextManager | None = None,
    places: Tensor | None = None,
) -> Tensor:
    """The denoiser's velocity (B, h*w, C) in float32 for one branch at timestep t (0..1000).

    `input_dtype` casts the latents first (a bf16 pipeline); `autocast` wraps the forward (training);
    `places` (B, S, 2): the text tokens' grounded places (`encoder_places`).
    """
    sigma = (t / 1000.0).expand(latents.shape[0]).to(latents.device)
    x = latents if input_dtype is None else latents.to(input_dtype)
    with autocast if autocast is not None else contextlib.nullcontext():
        out = model(
            x,
            embeds,
            sigma,
            image_grid=grid,
            encoder_attention_mask=mask_or_none(mask),
            encoder_places=places,
        )
    return out.sample.float()


def euler_sample(
    velocity: Velocity,
    latents: Tensor,
    scheduler,
    text: Conditions,
    guidance_scale: float | Callable[[], float],
    after_step: Callable[[int, Tensor, Tensor, Tensor], Tensor] | None = None,
    interrupted: Callable[[], bool] | None = None,
    timesteps: Tensor | None = None,
) -> Tensor:
    """Run the Euler steps of `scheduler` (already set, see `lens.sampling.schedule.scheduler_sigmas`).

    latents: (B, N, C) float32 noise. guidance_scale: a number, or a function read at every step (a
    callback may switch CFG off part-way); <= 1 runs no unconditional pass. after_step(i, t, latents,
    noise_pred) -> latents runs after each step (callbacks, progress). interrupted() -> True skips the
    remaining steps. timesteps: the steps to run, default all of `scheduler.timesteps`; image-to-image
    passes their tail, after `scheduler.set_begin_index` (i counts from 0 within them). Returns the
    final (B, N, C) latents.
    """
    for i, t in enumerate(scheduler.timesteps if timesteps is None else timesteps):
        if interrupted is not None and interrupted():
            continue
        scale = guidance_scale() if callable(guidance_scale) else guidance_scale
        grounded = {} if text.places is None else {"places": text.places}
        noise_pred = velocity(latents, text.embeds, text.mask, t, **grounded)
        if scale > 1.0:
            uncond = velocity(latents, text.null_embeds, text.null_mask, t)
            noise_pred = apply_cfg(noise_pred, uncond, scale)
        latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        if after_step is not None:
            latents = after_step(i, t, latents, noise_pred)
    return latents
