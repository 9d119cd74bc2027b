"""LensPipeline: prompt -> GPT-OSS features -> N Euler steps of the MMDiT (CFG) -> FLUX.2 decode.

diffusers `DiffusionPipeline` with the released components (scheduler, vae, text_encoder, tokenizer,
transformer), so `save_pretrained` / `from_pretrained` use the released layout, and diffusers'
conventions: `encode_prompt` / `prompt_embeds`, step callbacks with `num_timesteps`,
`guidance_scale` and `interrupt`, model CPU offload and group offload, and LoRA (`load_lora_weights`,
`fuse_lora`, `unload_lora_weights`; `lens.lora`). Importing this module registers the Lens classes
under diffusers'/transformers' names, which is what lets a released `model_index.json` resolve
(`import lens` arranges that lazily, see `lens.registration`). Input checks live in
`lens.pipeline_inputs`, the denoising loop with its callbacks in `lens.pipeline_loop`; image-to-image
and inpainting (`lens.img2img`, `lens.inpaint`) are subclasses built from the same pieces
(`_begin`, `_conditions`, `denoise`, `_finish`) and share the components through `from_pipe`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import diffusers
import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKLFlux2, DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from lens.errors import LensError
from lens.latents import LatentCodec, from_tokens
from lens.lora import LensLoraLoaderMixin
from lens.model.transformer import LensTransformer2DModel
from lens.pipeline_inputs import CALLBACK_TENSOR_INPUTS, CallInputs, check_call, check_grounding, resolve_size
from lens.pipeline_loop import denoise
from lens.reasoner.core import rewrite_for_pipeline
from lens.resolution import MAX_AREA, PATCH_PIXELS
from lens.sampling.euler import Conditions
from lens.sampling.schedule import scheduler_sigmas
from lens.text.chat import default_template
from lens.text.encoder import encode_prompts
from lens.text.grounding import pad_places, prompt_places

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


class LensPipeline(DiffusionPipeline, LensLoraLoaderMixin):
    model_cpu_offload_seq = "text_encoder->transformer->vae"
    # With precomputed prompt_embeds the text encoder need not be loaded at all.
    _optional_components = ["text_encoder", "tokenizer"]
    _callback_tensor_inputs = CALLBACK_TENSOR_INPUTS

    def __init__(
        self,
        scheduler: FlowMatchEulerDiscreteScheduler,
        vae: AutoencoderKLFlux2,
        text_encoder,
        tokenizer,
        transformer: LensTransformer2DModel,
        default_height: int = 1024,
        default_width: int = 1024,
        default_steps: int = 20,
        default_guidance_scale: float = 5.0,
        world_object_scale: float = 1.0,
    ):
        super().__init__()
        self.register_modules(
            scheduler=scheduler,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
        )
        # Model-specific defaults live in model_index.json (a nano model is not 1024^2, Turbo is 4 steps);
        # world_object_scale: the shapes world's object scale a nano model trained on, at which the
        # nano reasoner lays out its scenes (`lens.world.reasoner`; 1.0 for any other model)
        self.register_to_config(
            default_height=default_height,
            default_width=default_width,
            default_steps=default_steps,
            default_guidance_scale=default_guidance_scale,
            world_object_scale=world_object_scale,
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

    @classmethod
    def from_pipe(cls, pipeline, **kwargs):
        """diffusers' `from_pipe`: this class over the very same modules, no copy (e.g.
        `LensImg2ImgPipeline.from_pipe(pipe)`). The modules keep their dtype unless `dtype` is passed
        (diffusers would cast them, and so the source pipeline's, to float32)."""
        if kwargs.get("dtype") is None and kwargs.get("torch_dtype") is None:
            kwargs["dtype"] = pipeline.dtype
        new = super().from_pipe(pipeline, **kwargs)
        new.set_progress_bar_config(**getattr(pipeline, "_progress_bar_config", {}))
        return new

    # ------------------------------------------------------------------ state during a call
    # diffusers' conventions: callbacks such as SDCFGCutoffCallback read num_timesteps and set
    # `_guidance_scale = 0.0`; setting `_interrupt = True` skips the remaining steps.
    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def current_timestep(self) -> Tensor | None:
        return self._current_timestep

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    # ------------------------------------------------------------------ reasoner
    def enable_reasoner(self, reasoner) -> None:
        """Rewrite text prompts with `reasoner` (a `lens.reasoner.PromptReasoner`) before encoding;
        the prompts actually encoded are in `rewritten_prompts` after each call."""
        self._reasoner = reasoner

    def disable_reasoner(self) -> None:
        self._reasoner = None

    @property
    def rewritten_prompts(self) -> list[str] | None:
        """The prompts the last call encoded (after the reasoner; None when embeddings were given)."""
        return getattr(self, "_rewritten_prompt", None)

    # ------------------------------------------------------------------ memory
    def enable_group_offload(
        self, onload_device, offload_device=None, offload_type="block_level",
        num_blocks_per_group=None, exclude_modules=None, **kwargs,
    ):  # fmt: skip
        """diffusers' group offload, except that the VAE is always offloaded leaf by leaf: a block-level
        group of its layers loads in `vae.forward`, which `vae.decode` never calls. kwargs as diffusers'."""
        offload_device = offload_device or torch.device("cpu")
        excluded = [exclude_modules] if isinstance(exclude_modules, str) else list(exclude_modules or [])
        super().enable_group_offload(
            onload_device, offload_device, offload_type, num_blocks_per_group,
            exclude_modules=[*excluded, "vae"], **kwargs,
        )  # fmt: skip
        if "vae" not in excluded:
            self.vae.enable_group_offload(onload_device, offload_device, "leaf_level", **kwargs)

    # ------------------------------------------------------------------ attention
    def set_attention_slice(self, slice_size):
        """Refuse attention slicing (`enable_attention_slicing`) rather than silently ignore it."""
        if slice_size is not None:  # None is `disable_attention_slicing`: already the case
            raise LensError(
                "Lens has no attention slicing: the denoiser's attention runs in torch's fused SDPA "
                "kernels, which never hold the whole attention matrix on a GPU. To save memory use "
                "enable_model_cpu_offload(), or precomputed prompt_embeds without the text encoder."
            )

    # ------------------------------------------------------------------ text
    @torch.no_grad()
    def encode_prompt(
        self,
        prompt: str | list[str] | None = None,
        device=None,
        num_images_per_prompt: int = 1,
        prompt_embeds: Tensor | None = None,
        prompt_mask: Tensor | None = None,
        max_sequence_length: int = 512,
    ) -> tuple[Tensor, Tensor]:
        """Prompts -> (prompt_embeds (B*n, S, L, D), prompt_mask (B*n, S) bool), after the template prefix.

        Encode once, then pass the pair to `__call__` as prompt_embeds / prompt_mask (or as
        negative_prompt_embeds / negative_prompt_mask) and the text encoder can be dropped
        (`from_pretrained(..., text_encoder=None, tokenizer=None)`). Given prompt_embeds, they are only
        moved, cast and repeated. Any string is encoded, an empty one too (the template around an empty
        user message, as released); the zero-token unconditional branch needs no embeddings at all.
        """
        device = device or self._execution_device
        if prompt_embeds is None:
            prompts = [prompt] if isinstance(prompt, str) else prompt
            prompt_embeds, prompt_mask = self._encode_text(prompts, device, max_sequence_length)
        elif prompt_mask is None:  # embeddings without padding
            prompt_mask = torch.ones(prompt_embeds.shape[:2], dtype=torch.bool)
        embeds = prompt_embeds.to(device=device, dtype=self.transformer.dtype)
        mask = prompt_mask.to(device=device, dtype=torch.bool)
        n = num_images_per_prompt
        return embeds.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)

    def _encode_text(self, prompts, device, max_sequence_length) -> tuple[Tensor, Tensor]:
        if self.text_encoder is None or self.tokenizer is None:
            raise LensError(
                "this pipeline was loaded without its text encoder or tokenizer: pass prompt_embeds "
                "(and negative_prompt_embeds) from encode_prompt instead of text"
            )
        return encode_prompts(
            self.text_encoder,
            self.tokenizer,
            prompts,
            layers=tuple(self.transformer.config.selected_layer_index),
            max_length=max_sequence_length,
            device=device,
            allow_empty=True,  # the released pipeline encodes "" like any prompt
        )

    def _unconditional(self, negatives, embeds, mask, cond, device, n, max_sequence_length):
        """The unconditional branch: given embeddings, encoded negatives, or ZERO text tokens (no
        negative prompt, or ""). In a batch mixing "" with real negatives, the "" rows get an all-false
        mask, which is the same null condition."""
        if embeds is not None:
            return self.encode_prompt(None, device, n, embeds, mask, max_sequence_length)
        if negatives is None or not any(negatives):
            zero_tokens = torch.zeros(cond.shape[0], 0, dtype=torch.bool, device=cond.device)
            return cond.new_zeros(cond.shape[0], 0, *cond.shape[2:]), zero_tokens
        real = [i for i, text in enumerate(negatives) if text]
        feats, mask = self.encode_prompt(
            [negatives[i] for i in real], device, 1, None, None, max_sequence_length
        )
        feats, mask = _scatter_rows(feats, real, len(negatives)), _scatter_rows(mask, real, len(negatives))
        return feats.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)

    # ------------------------------------------------------------------ generate
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
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
        grounding: list | None = None,
    ):
        """Generate images.

        Args:
            prompt: one string or a list (any string, "" included); or pass prompt_embeds instead.
            negative_prompt: one string or one per prompt. None or "" (the released default) is the
                unconditional branch with ZERO text tokens, as trained.
            height, width: multiples of 16 (default: the model's native size); or aspect_ratio "W:H"
                from the released presets at `resolution` 1024 or 1440.
            num_inference_steps: Euler steps (default: the model's, 20 for Lens, 4 for Turbo).
            guidance_scale: CFG weight; <= 1 runs no unconditional pass at all (Turbo).
            generator: seeded generator(s); the same seed gives the same image.
            prompt_embeds, prompt_mask, negative_prompt_embeds, negative_prompt_mask: precomputed
                text features (B, S, L, D) and masks (B, S) from `encode_prompt`, one row per prompt.
            output_type: "pil", "np", "pt" or "latent" (normalised (B, 128, h, w) latents).
            callback_on_step_end: f(pipe, step, timestep, {name: tensor}) -> dict that may replace
                latents, prompt_embeds or negative_prompt_embeds; or a diffusers PipelineCallback.
            callback_on_step_end_tensor_inputs: names from `_callback_tensor_inputs` (latents,
                prompt_embeds, negative_prompt_embeds, noise_pred).
            grounding: not in Lens: per prompt, [(phrase, (x, y)), ...] phrases of the prompt and the
                image fractions where what they name should be; their tokens are placed there in RoPE
                (`lens.text.grounding`). A model trained grounded (`text_grounding` in its config)
                grounds every prompt: by these, else by a `GroundedPrompt`'s spans (the nano
                reasoner's), else the whole prompt at the centre.
        """
        # 0. every check before any model runs
        call = self._begin(
            prompt, negative_prompt, (prompt_embeds, prompt_mask, negative_prompt_embeds, negative_prompt_mask),
            num_inference_steps, guidance_scale, num_images_per_prompt, output_type,
            callback_on_step_end, callback_on_step_end_tensor_inputs, max_sequence_length,
        )  # fmt: skip
        call.grounding = check_grounding(grounding, call.prompts)
        default_size = (self.config.default_height, self.config.default_width)
        height, width = resolve_size(height, width, aspect_ratio, resolution, max_area, default_size)
        device = self._execution_device

        # 1. text features (after the reasoner, if enabled)
        text = self._conditions(call)

        # 2. noise in token space: (B, h*w, 128)
        grid = (height // PATCH_PIXELS, width // PATCH_PIXELS)
        shape = (call.batch, grid[0] * grid[1], self.transformer.config.in_channels)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise LensError(f"latents must be {shape} for this request, got {tuple(latents.shape)}")
        latents = latents.to(device=device, dtype=torch.float32)

        # 3. Euler steps on the shifted schedule (the loop the trainer's previews use too)
        scheduler_sigmas(self.scheduler, call.steps, grid[0] * grid[1], device=device)
        latents = denoise(self, latents, grid, text, call)

        # 4. decode
        return self._finish(latents, grid, output_type, return_dict)

    # ------------------------------------------------------------------ pieces every Lens pipeline shares
    def _begin(
        self, prompt, negative_prompt, embeds, steps, guidance_scale, n, output_type, callback,
        tensor_inputs, max_sequence_length,
    ) -> CallInputs:  # fmt: skip
        """Every check of the text, steps, batch and callback (`check_call`); resets the call state."""
        call = check_call(
            prompt, negative_prompt, embeds, steps, n, output_type, callback, tensor_inputs,
            max_sequence_length,
            embeds_shape=(
                len(self.transformer.config.selected_layer_index),
                self.transformer.config.enc_hidden_dim,
            ),
            default_steps=self.config.default_steps,
        )  # fmt: skip
        self._guidance_scale = (
            self.config.default_guidance_scale if guidance_scale is None else guidance_scale
        )
        self._interrupt, self._current_timestep = False, None
        return call

    def _conditions(self, call: CallInputs) -> Conditions:
        """Both branches' text; negatives are encoded only when CFG uses them."""
        device, n, length = self._execution_device, call.n, call.max_sequence_length
        prompts = rewrite_for_pipeline(self, call.prompts)
        embeds, mask = self.encode_prompt(prompts, device, n, call.prompt_embeds, call.prompt_mask, length)
        places = None
        if prompts is not None:  # grounded text (`lens.text.grounding`; the released layout when not asked)
            grounded = bool(self.transformer.config.get("text_grounding", False))
            template = default_template(self.text_encoder, self.tokenizer)
            places = prompt_places(self.tokenizer, template, prompts, call.grounding, grounded, length)
            places = None if places is None else pad_places(places, embeds.shape[1])
        null, null_mask = self._unconditional(
            call.negatives if self.do_classifier_free_guidance else None,
            call.negative_prompt_embeds,
            call.negative_prompt_mask,
            embeds,
            device,
            n,
            length,
        )
        places = None if places is None else places.to(device).repeat_interleave(n, 0)
        return Conditions(embeds, mask, null, null_mask, places)

    def _finish(self, latents: Tensor, grid: tuple[int, int], output_type: str, return_dict: bool):
        """Final (B, h*w, 128) latents -> the output, then the offload hooks are freed."""
        images = self._decode(from_tokens(latents, *grid), output_type)  # from (B, 128, h, w)
        self.maybe_free_model_hooks()
        return LensPipelineOutput(images=images) if return_dict else (images,)

    def _decode(self, grid: Tensor, output_type: str):
        if output_type == "latent":
            return grid
        pixels = LatentCodec(self.vae).decode(grid.to(self.vae.dtype)).float()
        images = (pixels / 2 + 0.5).clamp(0, 1)  # (B, 3, H, W)
        if output_type == "pt":
            return images
        images = images.permute(0, 2, 3, 1).cpu().numpy()
        return self.numpy_to_pil(images) if output_type == "pil" else images


def _scatter_rows(x: Tensor, rows: list[int], total: int) -> Tensor:
    """x's rows at positions `rows` of a zero tensor with `total` rows (zero features, false mask)."""
    if len(rows) == total:
        return x
    out = x.new_zeros(total, *x.shape[1:])
    out[rows] = x
    return out


# Make the released model_index.json ("diffusers", "LensPipeline"/"LensTransformer2DModel") resolve.
diffusers.LensPipeline = LensPipeline
diffusers.LensTransformer2DModel = LensTransformer2DModel
