"""The denoising loop of every Lens pipeline: `lens.sampling.euler_sample` with the pipeline's state
(`num_timesteps`, `current_timestep`, `guidance_scale`, `interrupt`), step callbacks and progress bar.

Text-to-image runs all the steps of the schedule from noise; image-to-image runs their tail from the
noised image; inpainting also passes `blend`, which puts the known region back after each step.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from lens.pipeline_inputs import CallInputs
from lens.sampling.euler import Conditions, denoiser_velocity, euler_sample


def denoise(
    pipe,
    latents: Tensor,
    grid: tuple[int, int],
    text: Conditions,
    call: CallInputs,
    timesteps: Tensor | None = None,
    blend: Callable[[int, Tensor], Tensor] | None = None,
) -> Tensor:
    """Run `timesteps` (default: all of `pipe.scheduler.timesteps`, already set) from `latents`
    (B, h*w, C) float32 on the (h, w) token grid; returns the final latents.

    After step i: `blend(i, latents)` if given, then `call.callback(pipe, i, t, {name: tensor})`,
    whose answer may replace latents, prompt_embeds or negative_prompt_embeds.
    """
    timesteps = pipe.scheduler.timesteps if timesteps is None else timesteps
    pipe._num_timesteps = len(timesteps)
    model = pipe.transformer

    def velocity(x: Tensor, embeds: Tensor, mask: Tensor | None, t: Tensor, places=None) -> Tensor:
        pipe._current_timestep = t
        return denoiser_velocity(model, x, embeds, mask, t, grid, model.dtype, places=places)

    with pipe.progress_bar(total=len(timesteps)) as progress:

        def after_step(i: int, t: Tensor, latents: Tensor, noise_pred: Tensor) -> Tensor:
            if blend is not None:
                latents = blend(i, latents)
            if call.callback is not None:
                named = {
                    "latents": latents,
                    "prompt_embeds": text.embeds,
                    "negative_prompt_embeds": text.null_embeds,
                    "noise_pred": noise_pred,
                }
                out = call.callback(pipe, i, t, {k: named[k] for k in call.tensor_inputs}) or {}
                latents = out.pop("latents", latents)
                text.embeds = out.pop("prompt_embeds", text.embeds)
                text.null_embeds = out.pop("negative_prompt_embeds", text.null_embeds)
            progress.update()
            return latents

        latents = euler_sample(
            velocity,
            latents,
            pipe.scheduler,
            text,
            lambda: pipe.guidance_scale,
            after_step,
            lambda: pipe.interrupt,
            timesteps=timesteps,
        )
    pipe._current_timestep = None
    return latents
