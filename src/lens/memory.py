"""FP8 storage for the Lens denoiser that keeps the precision-critical layers out of float8.

diffusers' `enable_layerwise_casting` stores weights in float8 and upcasts each layer for its forward,
skipping only layers named like norms / patch embeddings / `proj_out`. In Lens the per-block
modulation linears (`img_mod`, `txt_mod`: a third of the 4.1B parameters) must also stay in the compute
dtype: 4-bit or FP8 modulation weights are known to cause grid artifacts. The other memory modes are
diffusers' own and need no helper: `pipe.enable_model_cpu_offload()`, `pipe.enable_group_offload(...)`
/ `transformer.enable_group_offload(...)`, and `from_pretrained(path, text_encoder=None,
tokenizer=None)` with precomputed `prompt_embeds` (README, "Memory modes").
"""

from __future__ import annotations

import torch

FP8_SKIP_PATTERNS = (
    "img_mod",  # the image stream's modulation linear, one per block
    "txt_mod",  # the text stream's
    "norm",  # every RMSNorm / LayerNorm: txt_norm.*, img_norm*, norm_q/k, norm_out (and its linear)
    "time_text_embed",  # the timestep embedding MLP
    "^img_in$",  # the patch embedding
    "^proj_out$",  # the output projection
    "lora_",  # LoRA adapters (tiny; diffusers skips them by default too)
)


def enable_fp8_storage(
    transformer,
    compute_dtype: torch.dtype = torch.bfloat16,
    storage_dtype: torch.dtype = torch.float8_e4m3fn,
):
    """Store `transformer`'s weights in `storage_dtype` except the layers in FP8_SKIP_PATTERNS, which
    stay in `compute_dtype` (the model is cast to it first); returns the transformer."""
    if transformer.dtype != compute_dtype:
        transformer.to(compute_dtype)
    transformer.enable_layerwise_casting(
        storage_dtype=storage_dtype, compute_dtype=compute_dtype, skip_modules_pattern=FP8_SKIP_PATTERNS
    )
    return transformer
