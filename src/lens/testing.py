"""Tiny random Lens pipelines: the real classes at a few million parameters, for tests, demos, benches.

Every component is the production class (AutoencoderKLFlux2, a GPT-OSS LM, LensTransformer2DModel,
FlowMatchEulerDiscreteScheduler), only smaller, so a test that passes here exercises the real code.
"""

from __future__ import annotations

import torch

TINY_LM_LAYERS = 2
TINY_LM_WIDTH = 32


def tiny_denoiser_config(**overrides) -> dict:
    config = dict(
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=16,
        axes_dims_rope=(4, 6, 6),
        enc_hidden_dim=TINY_LM_WIDTH,
        selected_layer_index=(0, TINY_LM_LAYERS - 1),
    )
    return config | overrides


def tiny_random_pipeline(seed: int = 0, height: int = 64, width: int = 64, **denoiser_overrides):
    """A LensPipeline of random tiny components whose native size is height x width."""
    from lens.latents import tiny_flux2_vae
    from lens.model.transformer import LensTransformer2DModel
    from lens.pipeline import LensPipeline
    from lens.sampling.schedule import make_scheduler
    from lens.text.testing import tiny_gpt_oss, tiny_harmony_tokenizer

    torch.manual_seed(seed)
    transformer = LensTransformer2DModel(**tiny_denoiser_config(**denoiser_overrides)).eval()
    return LensPipeline(
        scheduler=make_scheduler(),
        vae=tiny_flux2_vae(seed=seed),
        text_encoder=tiny_gpt_oss(num_layers=TINY_LM_LAYERS, hidden_size=TINY_LM_WIDTH, seed=seed),
        tokenizer=tiny_harmony_tokenizer(),
        transformer=transformer,
        default_height=height,
        default_width=width,
        default_steps=4,
        default_guidance_scale=3.0,
    )


def randomise_lora_b(transformer, seed: int = 1, std: float = 0.05) -> None:
    """Give a fresh LoRA adapter a visible effect: its B matrices start at zero (a no-op)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)
