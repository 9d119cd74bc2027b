"""One Euler loop: the trainer's previews and sampled evaluations draw exactly what the pipeline draws."""

import torch

from lens.sampling.euler import Conditions, euler_sample
from lens.sampling.schedule import make_scheduler, scheduler_sigmas
from lens.testing import tiny_random_pipeline
from lens.train.previews import sample_latents


def test_previews_sample_bit_for_bit_like_the_pipeline():
    pipe = tiny_random_pipeline(height=32, width=48)
    prompts = ["a red circle above a blue square", "two small yellow triangles"]
    embeds, mask = pipe.encode_prompt(prompts)  # (2, S, L, D), padded
    texts = [embeds[i][mask[i]] for i in range(len(prompts))]  # (S_i, L, D): what the trainer passes
    for guidance in (1.0, 4.0):
        drawn = pipe(
            prompt_embeds=embeds,
            prompt_mask=mask,
            num_inference_steps=3,
            guidance_scale=guidance,
            generator=torch.Generator().manual_seed(7),
            output_type="latent",
        ).images  # (2, 128, 2, 3)
        previewed = sample_latents(pipe.transformer, texts, (2, 3), 3, guidance, 7, torch.device("cpu"))
        assert torch.equal(drawn, previewed), guidance


def test_guidance_is_read_every_step_and_interrupt_skips_the_rest():
    scheduler = make_scheduler()
    scheduler_sigmas(scheduler, 4, 16)
    calls, scale = [], [3.0]

    def velocity(x, embeds, mask, t):
        calls.append(embeds.shape[1])
        return torch.ones_like(x)

    def after(i, t, latents, noise_pred):
        scale[0] = 0.0  # a callback switching CFG off after the first step (SDCFGCutoffCallback)
        return latents

    text = Conditions(torch.zeros(1, 5, 2, 4), None, torch.zeros(1, 0, 2, 4), None)
    x = euler_sample(velocity, torch.zeros(1, 16, 8), scheduler, text, lambda: scale[0], after)
    assert calls == [5, 0, 5, 5, 5]  # CFG's zero-token pass only in step 0
    assert torch.allclose(x, torch.full_like(x, -1.0))  # sum of (sigma_next - sigma) = 0 - 1

    scheduler_sigmas(scheduler, 4, 16)
    calls.clear()
    euler_sample(velocity, torch.zeros(1, 16, 8), scheduler, text, 1.0, interrupted=lambda: len(calls) >= 2)
    assert calls == [5, 5]
