"""LensPipeline end to end on tiny random components: determinism, outputs, CFG paths, save/load."""

import json

import numpy as np
import PIL.Image
import pytest
import torch

from lens.errors import LensError
from lens.testing import tiny_random_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_random_pipeline()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_generates_pil_images_deterministically(pipe):
    a = pipe("a red circle left of a blue square", generator=_gen(1), num_inference_steps=2).images
    b = pipe("a red circle left of a blue square", generator=_gen(1), num_inference_steps=2).images
    c = pipe("a red circle left of a blue square", generator=_gen(2), num_inference_steps=2).images
    assert isinstance(a[0], PIL.Image.Image) and a[0].size == (64, 64)
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0]))
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))


def test_output_types_sizes_and_batches(pipe):
    out = pipe(
        ["one", "two"],
        height=32,
        width=48,
        num_images_per_prompt=2,
        output_type="np",
        num_inference_steps=1,
        generator=_gen(),
    ).images
    assert out.shape == (4, 32, 48, 3) and out.min() >= 0 and out.max() <= 1
    lat = pipe("x", aspect_ratio="1:2", num_inference_steps=1, output_type="latent", generator=_gen()).images
    assert lat.shape == (1, 128, 1472 // 16, 736 // 16)
    pt = pipe("x", height=16, width=16, num_inference_steps=1, output_type="pt", generator=_gen()).images
    assert pt.shape == (1, 3, 16, 16)


def test_guidance_off_runs_no_unconditional_pass(pipe, monkeypatch):
    calls = []
    real = pipe.transformer.forward
    monkeypatch.setattr(
        pipe.transformer, "forward", lambda *a, **k: calls.append(a[1].shape[1]) or real(*a, **k)
    )
    pipe("a prompt", num_inference_steps=3, guidance_scale=1.0, output_type="latent", generator=_gen())
    assert len(calls) == 3 and all(s > 0 for s in calls)
    calls.clear()
    pipe("a prompt", num_inference_steps=3, guidance_scale=4.0, output_type="latent", generator=_gen())
    assert len(calls) == 6 and calls[1::2] == [0, 0, 0]  # uncond branch has ZERO text tokens


def test_negative_prompt_replaces_the_null_condition(pipe):
    kw = dict(num_inference_steps=2, output_type="latent", guidance_scale=4.0)
    plain = pipe("a cat", generator=_gen(), **kw).images
    neg = pipe("a cat", negative_prompt="blurry", generator=_gen(), **kw).images
    assert not torch.allclose(plain, neg)


def test_step_callback_sees_and_can_replace_latents(pipe):
    seen = []

    def cb(p, i, t, tensors):
        seen.append((i, float(t), tensors["latents"].shape))
        return {"latents": torch.zeros_like(tensors["latents"])} if i == 1 else {}

    out = pipe(
        "x", num_inference_steps=2, output_type="latent", callback_on_step_end=cb, generator=_gen()
    ).images
    assert [s[0] for s in seen] == [0, 1] and seen[0][1] == 1000.0
    assert torch.count_nonzero(out) == 0


def test_pipeline_save_and_load_round_trip(pipe, tmp_path):
    from lens import LensPipeline

    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "LensPipeline"
    assert index["transformer"] == ["diffusers", "LensTransformer2DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLFlux2"]
    assert index["text_encoder"] == ["transformers", "LensGptOssEncoder"]
    assert index["tokenizer"] == ["transformers", "PreTrainedTokenizerFast"]
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    assert index["default_height"] == 64
    loaded = LensPipeline.from_pretrained(tmp_path)
    kw = dict(num_inference_steps=2, output_type="np")
    a = pipe("a green star", generator=_gen(3), **kw).images
    b = loaded("a green star", generator=_gen(3), **kw).images
    np.testing.assert_allclose(a, b, atol=1e-5)  # same weights; summation order may differ by CPU


def test_diffusion_pipeline_resolves_released_class_names(pipe, tmp_path):
    from diffusers import DiffusionPipeline

    pipe.save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "LensPipeline"
    assert type(loaded.text_encoder).__name__ == "LensGptOssEncoder"


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(prompt=3), "string"),
        (dict(prompt=[]), "non-empty list"),
        (dict(prompt=["ok", None]), "must be a string"),
        (dict(prompt=["a", "b"], negative_prompt=["only one"]), "one per prompt"),
        (dict(prompt="x", height=100, width=64), "multiple of 16"),
        (dict(prompt="x", height=4096, width=4096), "limit"),
        (dict(prompt="x", num_inference_steps=0), "positive integer"),
        (dict(prompt="x", num_inference_steps=-2), "positive integer"),
        (dict(prompt="x", aspect_ratio="5:7"), "aspect ratio"),
        (dict(prompt="x", aspect_ratio="1:1", height=64), "either"),
        (dict(prompt="x", output_type="jpeg"), "output_type"),
        (dict(prompt="x", num_images_per_prompt=0), "positive integer"),
    ],
)
def test_bad_input_gets_a_clear_error(pipe, kwargs, words):
    with pytest.raises(LensError, match=words):
        pipe(**kwargs)
