"""LensInpaintPipeline: repaint the white part of a mask, keep the rest, on the text-to-image model.

Standard latent-space inpainting (the model has no mask input): the mask is brought to the latent
token grid (`lens.image_inputs.prepare_mask`: a token is repainted when any of its 16x16 pixels is
white), the loop is LensImg2ImgPipeline's, and after every Euler step the kept tokens are replaced by
the init image's latents noised to the new sigma with the same noise, so after the last step they are
the image's own latents and only the masked tokens were drawn by the model.
"""

from __future__ import annotations

from collections.abc import Callable

import diffusers
import PIL.Image
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from torch import Tensor

from lens.image_inputs import INPAINT_STRENGTH, output_size, prepare_image, prepare_mask
from lens.img2img import LensImg2ImgPipeline
from lens.resolution import MAX_AREA


class LensInpaintPipeline(LensImg2ImgPipeline):
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image: PIL.Image.Image | list | Tensor | None = None,
        mask_image: PIL.Image.Image | list | Tensor | None = None,
        strength: float = INPAINT_STRENGTH,
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
        """Repaint the white part of `mask_image` in `image` after `prompt`.

        Args:
            mask_image: white (1) where to repaint, black (0) where to keep: a PIL image (any mode,
                read as grey), or a (H, W) / (B, H, W) / (B, 1, H, W) array or tensor in [0, 1];
                resized to the image. One for every prompt or one per prompt.
            strength: in (0, 1]; 1 (the default) draws the masked area from pure noise, smaller
                values start it from the noised image, keeping its colours and layout.
            Everything else as in `LensImg2ImgPipeline.__call__`.
        """
        call = self._begin(
            prompt, negative_prompt, (prompt_embeds, prompt_mask, negative_prompt_embeds, negative_prompt_mask),
            num_inference_steps, guidance_scale, num_images_per_prompt, output_type,
            callback_on_step_end, callback_on_step_end_tensor_inputs, max_sequence_length,
        )  # fmt: skip
        size = output_size(image, height, width, max_area)
        pixels = prepare_image(image, size, call.rows)
        mask = prepare_mask(mask_image, size, call.rows)
        return self._redraw(call, pixels, strength, generator, return_dict, mask)


diffusers.LensInpaintPipeline = LensInpaintPipeline  # a saved model_index.json names it
