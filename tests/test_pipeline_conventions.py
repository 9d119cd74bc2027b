"""LensPipeline as a diffusers user drives it: negative_prompt="", prompt_embeds, callbacks with
num_timesteps / guidance_scale / interrupt, attention switches that are refused rather than ignored."""

import numpy as np
import pytest
import torch

from lens.errors import LensError
from lens.testing import tiny_random_pipeline

KW = dict(num_inference_steps=2, output_type="latent", guidance_scale=4.0)


@pytest.fixture(scope="module")
def pipe():
    return tiny_random_pipeline()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def text_lengths(pipe, monkeypatch):
    """The text length S of every denoiser call, in order."""
    seen, real = [], pipe.transformer.forward
    monkeypatch.setattr(
        pipe.transformer, "forward", lambda *a, **k: seen.append(a[1].shape[1]) or real(*a, **k)
    )
    return seen


# ---------------------------------------------------------------- prompts and negatives
def test_empty_negative_prompt_is_the_zero_token_branch(pipe, text_lengths):
    plain = pipe("a cat", generator=_gen(), **KW).images
    empty = pipe("a cat", negative_prompt="", generator=_gen(), **KW).images
    assert torch.equal(plain, empty)
    assert text_lengths[1::2] == [0, 0, 0, 0]  # both calls: unconditional passes with ZERO text tokens


def test_empty_negative_in_a_batch_is_the_null_condition_for_its_row(pipe):
    alone = pipe("a cat", generator=_gen(), **KW).images
    both = pipe(["a cat", "a dog"], negative_prompt=["", "blurry"], generator=_gen(), **KW).images
    same_noise = pipe(["a cat", "a dog"], generator=_gen(), **KW).images
    # Row 0 sees an all-false mask instead of zero tokens: the same condition up to rounding.
    torch.testing.assert_close(both[0], same_noise[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(both[1], same_noise[1])
    assert alone.shape == both[:1].shape


@pytest.mark.parametrize("prompt", ["", "   "])
def test_an_empty_prompt_is_encoded_like_any_other(pipe, prompt):
    embeds, mask = pipe.encode_prompt(prompt)
    assert embeds.shape[1] > 0 and mask.all()  # the template after the (empty) user message
    out = pipe(prompt, generator=_gen(), **KW).images
    assert torch.isfinite(out).all()
    assert torch.equal(out, pipe(prompt_embeds=embeds, prompt_mask=mask, generator=_gen(), **KW).images)


# ---------------------------------------------------------------- precomputed embeddings
def test_prompt_embeds_from_encode_prompt_give_the_same_image(pipe):
    prompts = ["a cat", "a small dog with a long tail next to a red ball"]  # different lengths: padded
    negatives = ["blurry", "dark"]
    kw = dict(num_inference_steps=2, output_type="np", guidance_scale=4.0, num_images_per_prompt=2)
    from_text = pipe(prompts, negative_prompt=negatives, generator=_gen(5), **kw).images
    embeds, mask = pipe.encode_prompt(prompts)
    neg, neg_mask = pipe.encode_prompt(negatives)
    assert embeds.shape[:2] == mask.shape and embeds.shape[2:] == (2, 32) and not mask.all()
    from_embeds = pipe(
        prompt_embeds=embeds,
        prompt_mask=mask,
        negative_prompt_embeds=neg,
        negative_prompt_mask=neg_mask,
        generator=_gen(5),
        **kw,
    ).images
    np.testing.assert_array_equal(from_text, from_embeds)
    repeated, repeated_mask = pipe.encode_prompt(prompts, num_images_per_prompt=2)
    assert torch.equal(repeated[::2], embeds) and torch.equal(repeated_mask[1::2], mask)


def test_a_pipeline_without_text_encoder_runs_from_embeddings(pipe, tmp_path):
    from lens.pipeline import LensPipeline

    embeds, mask = pipe.encode_prompt("a green star")
    reference = pipe("a green star", generator=_gen(3), **KW).images
    pipe.save_pretrained(tmp_path)
    bare = LensPipeline.from_pretrained(tmp_path, text_encoder=None, tokenizer=None)
    assert bare.text_encoder is None
    out = bare(prompt_embeds=embeds, prompt_mask=mask, generator=_gen(3), **KW).images
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)
    with pytest.raises(LensError, match="prompt_embeds"):
        bare("a green star", **KW)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(), "prompt_embeds"),
        (dict(prompt="x", prompt_embeds=torch.zeros(1, 3, 2, 32)), "not both"),
        (dict(prompt="x", negative_prompt="y", negative_prompt_embeds=torch.zeros(1, 3, 2, 32)), "not both"),
        (dict(prompt_embeds=torch.zeros(1, 3, 32)), r"\(B, S, 2, 32\)"),
        (dict(prompt_embeds=torch.zeros(1, 3, 2, 32), prompt_mask=torch.ones(1, 4)), r"\(B, S\)"),
        (dict(prompt="x", prompt_mask=torch.ones(1, 4)), "without prompt_embeds"),
        (dict(prompt=["a", "b"], negative_prompt_embeds=torch.zeros(1, 3, 2, 32)), "2 prompts"),
    ],
)
def test_bad_embeddings_get_a_clear_error(pipe, kwargs, words):
    with pytest.raises(LensError, match=words):
        pipe(**kwargs)


# ---------------------------------------------------------------- callbacks
def test_callback_sees_num_timesteps_guidance_scale_and_every_tensor(pipe):
    seen = {}

    def cb(p, i, t, tensors):
        seen[i] = (
            p.num_timesteps,
            p.guidance_scale,
            p.current_timestep,
            {k: v.shape for k, v in tensors.items()},
        )
        return {}

    names = ["latents", "prompt_embeds", "negative_prompt_embeds", "noise_pred"]
    pipe("x", callback_on_step_end=cb, callback_on_step_end_tensor_inputs=names, generator=_gen(), **KW)
    steps, scale, t, shapes = seen[1]
    assert steps == 2 and scale == 4.0 and t == pipe.scheduler.timesteps[1]
    assert shapes["latents"] == shapes["noise_pred"] == (1, 16, 128)
    assert shapes["prompt_embeds"][2:] == (2, 32) and shapes["negative_prompt_embeds"][1:] == (0, 2, 32)
    assert pipe.current_timestep is None  # reset once the loop is over


def test_diffusers_cfg_cutoff_callback_stops_the_unconditional_pass(pipe, text_lengths):
    from diffusers.callbacks import SDCFGCutoffCallback

    cutoff = SDCFGCutoffCallback(cutoff_step_ratio=0.5)  # reads num_timesteps, sets _guidance_scale = 0
    pipe("x", num_inference_steps=4, guidance_scale=4.0, output_type="latent", callback_on_step_end=cutoff)
    assert len(text_lengths) == 4 * 2 - 1  # steps 0-2 with CFG (cutoff after step 2), step 3 without
    assert pipe.guidance_scale == 0.0 and not pipe.do_classifier_free_guidance


def test_interrupt_skips_the_remaining_steps(pipe, text_lengths):
    def stop(p, i, t, tensors):
        p._interrupt = True
        return {}

    out = pipe(
        "x", num_inference_steps=4, guidance_scale=1.0, output_type="latent", callback_on_step_end=stop
    )
    assert len(text_lengths) == 1 and pipe.interrupt and torch.isfinite(out.images).all()


def test_callback_can_replace_prompt_embeds(pipe):
    def blank(p, i, t, tensors):
        return {"prompt_embeds": torch.zeros_like(tensors["prompt_embeds"])}

    plain = pipe("a cat", generator=_gen(), **KW).images
    kw = dict(callback_on_step_end=blank, callback_on_step_end_tensor_inputs=["prompt_embeds"])
    assert not torch.allclose(plain, pipe("a cat", generator=_gen(), **kw, **KW).images)


def test_unknown_callback_tensor_is_refused_before_the_first_step(pipe, text_lengths):
    with pytest.raises(LensError, match="unknown"):
        pipe("x", callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs=["latent"], **KW)
    assert text_lengths == []


# ---------------------------------------------------------------- attention switches
def test_attention_slicing_and_other_backends_are_refused(pipe):
    with pytest.raises(LensError, match="attention slicing"):
        pipe.enable_attention_slicing()
    pipe.disable_attention_slicing()  # already the case
    with pytest.raises(LensError, match="native"):
        pipe.transformer.set_attention_backend("flash")
    pipe.transformer.set_attention_backend("native")  # what runs anyway
