"""LensPipeline: prompt -> GPT-OSS features -> N Euler steps of the MMDiT (CFG) -> FLUX.2 decode.

diffusers `DiffusionPipeline` with the released components (scheduler, vae, text_encoder, tokenizer,
transformer), so `save_pretrained` / `from_pretrained` use the released layout. Importing this module
registers the Lens classes under diffusers'/transformers' names, which is what lets a released
`model_index.json` resolve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import diffusers
import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from lens.errors import LensError
from lens.latents import LatentCodec, from_tokens
from lens.model.transformer import LensTransformer2DModel
from lens.resolution import MAX_AREA, PATCH_PIXELS, preset, validate_size
from lens.sampling.guidance import apply_cfg
from lens.sampling.schedule import scheduler_sigmas
from lens.text.encoder import encode_prompts

OUTPUT_TYPES = ("pil", "np", "pt", "latent")
# The released model_index.json names our classes under the libraries they extend, and the tokenizer
# by its transformers-4 name (transformers 5 calls the same class TokenizersBackend). A GPT-OSS that
# AutoModelForCausalLM loaded (training's encoders) is the same model as LensGptOssEncoder.
RELEASED_NAMES = {
    "LensTransformer2DModel": ("diffusers", "LensTransformer2DModel"),
    "LensGptOssEncoder": ("transformers", "LensGptOssEncoder"),
    "GptOssForCausalLM": ("transformers", "LensGptOssEncoder"),
    "TokenizersBackend": ("transformers", "PreTrainedTokenizerFast"),
}


def released_index(index: dict) -> dict:
    """A model_index.json with every component's class under its released name (older folders wrote
    e.g. ["transformers", "GptOssForCausalLM"] for the text encoder)."""
    return {
        key: list(RELEASED_NAMES[value[1]])
        if isinstance(value, list) and len(value) == 2 and value[1] in RELEASED_NAMES
        else value
        for key, value in index.items()
    }


@dataclass
class LensPipelineOutput(BaseOutput):
    """images: list of PIL images, (B, H, W, 3) numpy in [0, 1], (B, 3, H, W) tensor, or (B, 128, h, w) latents."""

    images: list[PIL.Image.Image] | np.ndarray | Tensor


class LensPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        scheduler,
        vae,
        text_encoder,
        tokenizer,
        transformer: LensTransformer2DModel,
        default_height: int = 1024,
        default_width: int = 1024,
        default_steps: int = 20,
        default_guidance_scale: float = 5.0,
    ):
        super().__init__()
        self.register_modules(
            scheduler=scheduler,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
        )
        # Model-specific defaults live in model_index.json (a nano model is not 1024^2, Turbo is 4 steps).
        self.register_to_config(
            default_height=default_height,
            default_width=default_width,
            default_steps=default_steps,
            default_guidance_scale=default_guidance_scale,
        )

    def register_modules(self, **modules):
        """diffusers would record our classes under `lens.*`; record the released names instead."""
        super().register_modules(**modules)
        released = {
            name: RELEASED_NAMES[type(m).__name__]
            for name, m in modules.items()
            if type(m).__name__ in RELEASED_NAMES
        }
        if released:
            self.register_to_config(**released)

    # ------------------------------------------------------------------ text
    @torch.no_grad()
    def encode_prompt(
        self, prompts: list[str], device=None, max_sequence_length: int = 512
    ) -> tuple[Tensor, Tensor]:
        """Prompts -> features (B, S, L, D) and mask (B, S) bool, after the template prefix."""
        device = device or self._execution_device
        layers = tuple(self.transformer.config.selected_layer_index)
        feats, mask = encode_prompts(
            self.text_encoder,
            self.tokenizer,
            prompts,
            layers=layers,
            max_length=max_sequence_length,
            device=device,
        )
        return feats.to(device=device, dtype=self.transformer.dtype), mask.to(device)

    # ------------------------------------------------------------------ checks
    def _resolve_size(self, height, width, aspect_ratio, resolution, max_area) -> tuple[int, int]:
        if aspect_ratio is not None:
            if height is not None or width is not None:
                raise LensError("pass either aspect_ratio or height/width, not both")
            return preset(aspect_ratio, resolution)
        height = self.config.default_height if height is None else height
        width = self.config.default_width if width is None else width
        return validate_size(height, width, max_area=max_area)

    @staticmethod
    def _check_prompts(prompt, negative_prompt) -> tuple[list[str], list[str] | None]:
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, (list, tuple)) or not prompts:
            raise LensError(
                f"prompt must be a non-empty string or list of strings, got {type(prompt).__name__}"
            )
        for p in prompts:
            if not isinstance(p, str) or not p.strip():
                raise LensError(f"every prompt must be a non-empty string, got {p!r}")
        if negative_prompt is None:
            return list(prompts), None
        negs = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else negative_prompt
        if not isinstance(negs, (list, tuple)) or len(negs) != len(prompts):
            n = len(negs) if isinstance(negs, (list, tuple)) else type(negs).__name__
            raise LensError(
                f"negative_prompt must be a string or a list of {len(prompts)} strings (one per prompt), got {n}"
            )
        if not all(isinstance(n, str) for n in negs):
            raise LensError("every negative prompt must be a string")
        return list(prompts), list(negs)

    # ------------------------------------------------------------------ generate
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        aspect_ratio: str | None = None,
        resolution: int = 1024,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
        max_sequence_length: int = 512,
        max_area: int = MAX_AREA,
    ):
        """Generate images.

        Args:
            prompt / negative_prompt: one string or a list; the negative list must match the prompts.
                Without a negative prompt the unconditional branch has ZERO text tokens (as trained).
            height, width: multiples of 16 (default: the model's native size); or aspect_ratio "W:H"
                from the released presets at `resolution` 1024 or 1440.
            num_inference_steps: Euler steps (default: the model's, 20 for Lens, 4 for Turbo).
            guidance_scale: CFG weight; <= 1 runs no unconditional pass at all (Turbo).
            generator: seeded generator(s); the same seed gives the same image.
            output_type: "pil", "np", "pt" or "latent" (normalised (B, 128, h, w) latents).
            callback_on_step_end: f(pipe, step, timestep, {name: tensor}) -> dict that may replace latents.
        """
        prompts, negatives = self._check_prompts(prompt, negative_prompt)
        height, width = self._resolve_size(height, width, aspect_ratio, resolution, max_area)
        steps = self.config.default_steps if num_inference_steps is None else num_inference_steps
        scale = self.config.default_guidance_scale if guidance_scale is None else guidance_scale
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise LensError(f"num_inference_steps must be a positive integer, got {steps!r}")
        if not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
            raise LensError(
                f"num_images_per_prompt must be a positive integer, got {num_images_per_prompt!r}"
            )
        if output_type not in OUTPUT_TYPES:
            raise LensError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        do_cfg = scale > 1.0
        device = self._execution_device
        n = num_images_per_prompt

        # 1. text features; the unconditional branch is zero tokens unless negatives are given
        cond, cond_mask = self.encode_prompt(prompts, device, max_sequence_length)
        cond, cond_mask = cond.repeat_interleave(n, 0), cond_mask.repeat_interleave(n, 0)
        uncond = uncond_mask = None
        if do_cfg and negatives is not None:
            uncond, uncond_mask = self.encode_prompt(negatives, device, max_sequence_length)
            uncond, uncond_mask = uncond.repeat_interleave(n, 0), uncond_mask.repeat_interleave(n, 0)
        elif do_cfg:
            uncond = cond.new_zeros(cond.shape[0], 0, *cond.shape[2:])

        # 2. noise in token space: (B, h*w, 128)
        h, w = height // PATCH_PIXELS, width // PATCH_PIXELS
        channels = self.transformer.config.in_channels
        batch = len(prompts) * n
        if latents is None:
            latents = randn_tensor(
                (batch, h * w, channels), generator=generator, device=device, dtype=torch.float32
            )
        elif tuple(latents.shape) != (batch, h * w, channels):
            raise LensError(
                f"latents must be {(batch, h * w, channels)} for this request, got {tuple(latents.shape)}"
            )
        latents = latents.to(device=device, dtype=torch.float32)

        # 3. Euler steps on the shifted schedule
        scheduler_sigmas(self.scheduler, steps, h * w, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)

        def velocity(feats, mask, t):
            x = latents.to(self.transformer.dtype)
            sigma = (t / 1000.0).expand(batch).to(device)
            return self.transformer(
                x, feats, sigma, image_grid=(h, w), encoder_attention_mask=mask
            ).sample.float()

        with self.progress_bar(total=len(timesteps)) as progress:
            for i, t in enumerate(timesteps):
                v = velocity(cond, _mask_or_none(cond_mask), t)
                if do_cfg:
                    v = apply_cfg(v, velocity(uncond, _mask_or_none(uncond_mask), t), scale)
                latents = self.scheduler.step(v, t, latents, return_dict=False)[0]
                if callback_on_step_end is not None:
                    bad = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
                    if bad:
                        raise LensError(
                            f"callback tensors {sorted(bad)} unknown; choose from {self._callback_tensor_inputs}"
                        )
                    latents = (callback_on_step_end(self, i, t, {"latents": latents}) or {}).get(
                        "latents", latents
                    )
                progress.update()

        # 4. decode
        grid = from_tokens(latents, h, w)  # (B, 128, h, w)
        if output_type == "latent":
            images = grid
        else:
            pixels = LatentCodec(self.vae).decode(grid.to(self.vae.dtype)).float()
            images = (pixels / 2 + 0.5).clamp(0, 1)  # (B, 3, H, W)
            if output_type != "pt":
                images = images.permute(0, 2, 3, 1).cpu().numpy()
                if output_type == "pil":
                    images = self.numpy_to_pil(images)
        self.maybe_free_model_hooks()
        return LensPipelineOutput(images=images) if return_dict else (images,)


def _mask_or_none(mask: Tensor | None) -> Tensor | None:
    """Drop an all-true text mask so attention runs unmasked (fused kernels)."""
    return None if mask is None or bool(mask.all()) else mask


# Make the released model_index.json ("diffusers", "LensPipeline"/"LensTransformer2DModel") resolve.
diffusers.LensPipeline = LensPipeline
diffusers.LensTransformer2DModel = LensTransformer2DModel
