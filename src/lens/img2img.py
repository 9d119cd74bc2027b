"""LensImg2ImgPipeline: an image and a prompt -> the image redrawn, on the text-to-image model itself.

The image is encoded with the latent codec; the sigma schedule is picked exactly as `LensPipeline`
picks it for `num_inference_steps`, then entered at the step that matches `strength` (diffusers'
convention, `lens.image_inputs.first_step`): the start is x = sigma * noise + (1 - sigma) * x0 (flow
matching, x_t = (1 - t) x0 + t noise) and the remaining steps are the same Euler loop. strength 1 is
text-to-image from the same noise. Components, callbacks, output types, save/load and LoRA are
LensPipeline's; `LensImg2ImgPipeline.from_pipe(pipe)` shares the very same modules.
`LensInpaintPipeline` (`lens.inpaint`) is this loop with a mask.
"""

from __future__ import annotations

from collections.abc import Callable

import diffusers
import PIL.Image
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from lens.image_inputs import IMG2IMG_STRENGTH, check_strength, first_step, output_size, prepare_image
from lens.latents import LatentCodec, to_tokens
from lens.pipeline import LensPipeline
from lens.pipeline_inputs import CallInputs
from lens.pipeline_loop import denoise
from lens.resolution import MAX_AREA, PATCH_PIXELS
from lens.sampling.schedule import noised, scheduler_sigmas


class LensImg2ImgPipeline(LensPipeline):
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image: PIL.Image.Image | list | Tensor | None = None,
        strength: float = IMG2IMG_STRENGTH,
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        prompt_embeds: Tensor | None = None,
        prompt_mask: Tensor | None = None,
        negative_prompt_embeds: Tensor | None = None,
        negative_prompt_mask: Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | tuple[str, ...] = ("latents",),
        max_sequence_length: int = 512,
        max_area: int = MAX_AREA,
    ):
        """Redraw `image` after `prompt`.

        Args:
            image: the init image (`lens.image_inputs`: PIL, numpy or tensor in [0, 1]; one for every
                prompt or one per prompt). Its sides must be multiples of 16 unless height and width
                are given, to which it is then resized.
            strength: in (0, 1]; how much of the schedule runs: 1 starts from pure noise (the image is
                ignored), 0.6 (the default) keeps the layout and colours and redraws the detail.
            num_inference_steps: the schedule's length; about strength * steps of them run, so
                `num_timesteps` in a callback is that number.
            Everything else as in `LensPipeline.__call__` (no `latents`: the start is the image).
        """
        call = self._begin(
            prompt, negative_prompt, (prompt_embeds, prompt_mask, negative_prompt_embeds, negative_prompt_mask),
            num_inference_steps, guidance_scale, num_images_per_prompt, output_type,
            callback_on_step_end, callback_on_step_end_tensor_inputs, max_sequence_length,
        )  # fmt: skip
        size = output_size(image, height, width, max_area)
        pixels = prepare_image(image, size, call.rows)
        return self._redraw(call, pixels, strength, generator, return_dict)

    def _redraw(
        self,
        call: CallInputs,
        pixels: Tensor,
        strength: float,
        generator,
        return_dict: bool,
        mask: Tensor | None = None,
    ):
        """The image-to-image loop from (B, 3, H, W) pixels; with a (B, h*w, 1) token `mask` (1 =
        repaint), the other tokens are put back after each step at the new noise level: the init
        latents noised with the same noise, so they are the image's own latents after the last step."""
        strength = check_strength(strength)
        start = first_step(call.steps, strength)
        device = self._execution_device
        text = self._conditions(call)

        grid = (pixels.shape[-2] // PATCH_PIXELS, pixels.shape[-1] // PATCH_PIXELS)
        x0 = self._image_latents(pixels, call)  # (B*n, h*w, 128) float32
        noise = randn_tensor(x0.shape, generator=generator, device=device, dtype=torch.float32)
        sigmas = scheduler_sigmas(self.scheduler, call.steps, grid[0] * grid[1], device=device)
        self.scheduler.set_begin_index(start)
        latents = noised(x0, noise, sigmas[start])

        blend = None
        if mask is not None:
            keep = 1 - _rows(mask.to(device), call)  # (B*n, h*w, 1): 1 where the image stays

            def blend(i: int, latents: Tensor) -> Tensor:  # after step i the level is sigmas[start + i + 1]
                return latents * (1 - keep) + noised(x0, noise, sigmas[start + i + 1]) * keep

        latents = denoise(self, latents, grid, text, call, self.scheduler.timesteps[start:], blend)
        return self._finish(latents, grid, call.output_type, return_dict)

    def _image_latents(self, pixels: Tensor, call: CallInputs) -> Tensor:
        """(B, 3, H, W) pixels in [-1, 1] -> (rows * n, h*w, 128) float32 normalised tokens."""
        grid = LatentCodec(self.vae).encode(pixels)  # (B, 128, h, w), the posterior mode
        return _rows(to_tokens(grid).to(self._execution_device, torch.float32), call)


def _rows(x: Tensor, call: CallInputs) -> Tensor:
    """One row per image to generate, from one row for all prompts or one per prompt."""
    return x.repeat_interleave(call.n if x.shape[0] == call.rows else call.batch, 0)


diffusers.LensImg2ImgPipeline = LensImg2ImgPipeline  # a saved model_index.json names it
