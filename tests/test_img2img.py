"""LensImg2ImgPipeline on tiny random components: the schedule entered at strength, strength 1 as
text-to-image, components shared with LensPipeline (from_pipe), save/load, callbacks, bad input."""

import json

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor

from lens.errors import LensError
from lens.image_inputs import first_step
from lens.img2img import LensImg2ImgPipeline
from lens.inpaint import LensInpaintPipeline
from lens.latents import LatentCodec, to_tokens
from lens.pipeline import LensPipeline
from lens.sampling.schedule import noised, scheduler_sigmas
from lens.testing import tiny_random_pipeline

COMPONENTS = ("scheduler", "vae", "text_encoder", "tokenizer", "transformer")


@pytest.fixture(scope="module")
def pipe():
    return tiny_random_pipeline()


@pytest.fixture(scope="module")
def img2img(pipe):
    return LensImg2ImgPipeline.from_pipe(pipe)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _picture(height=64, width=64, seed=0) -> PIL.Image.Image:
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return PIL.Image.fromarray(rgb)


def _image_tokens(pipe, image) -> torch.Tensor:
    """(1, h*w, 128) normalised latents of a PIL image, computed here without the pipeline."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    with torch.no_grad():
        return to_tokens(LatentCodec(pipe.vae).encode(pixels)).float()


@pytest.fixture
def denoiser_inputs(pipe, monkeypatch):
    """(latents, timestep) of every denoiser call, in order."""
    seen, real = [], pipe.transformer.forward
    monkeypatch.setattr(
        pipe.transformer,
        "forward",
        lambda *a, **k: seen.append((a[0].clone(), a[2].clone())) or real(*a, **k),
    )
    return seen


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_strength_one_is_text_to_image_from_the_same_noise(pipe, img2img, guidance):
    kw = dict(num_inference_steps=3, guidance_scale=guidance, output_type="latent")
    text_to_image = pipe("a red circle", generator=_gen(4), **kw).images
    redrawn = img2img("a red circle", image=_picture(), strength=1.0, generator=_gen(4), **kw).images
    assert torch.equal(redrawn, text_to_image)  # sigma 1: the image's latents are multiplied by 0


@pytest.mark.parametrize(
    ("steps", "strength", "start"),
    [(4, 1.0, 0), (4, 0.5, 2), (4, 0.3, 2), (10, 0.25, 7), (4, 0.01, 3), (20, 0.6, 8)],
)
def test_first_step_follows_diffusers(steps, strength, start):
    # diffusers' FLUX img2img: init_timestep = min(steps * strength, steps); t_start = int(steps - init)
    assert first_step(steps, strength) == start


def test_the_schedule_is_entered_at_the_sigma_strength_picks(pipe, img2img, denoiser_inputs):
    image, steps, strength = _picture(seed=1), 5, 0.6
    seen = []

    def callback(p, i, t, tensors):
        seen.append((i, float(t), p.num_timesteps))
        return {}

    img2img(
        "a blue square",
        image=image,
        strength=strength,
        num_inference_steps=steps,
        guidance_scale=1.0,
        generator=_gen(7),
        output_type="latent",
        callback_on_step_end=callback,
    )
    # the full 5-step schedule of LensPipeline (mu from 5 steps and 16 tokens), entered at step 2
    start = first_step(steps, strength)
    sigmas = scheduler_sigmas(pipe.scheduler, steps, 16).clone()
    assert start == 2 and len(denoiser_inputs) == steps - start
    assert [s[0] for s in seen] == [0, 1, 2] and {s[2] for s in seen} == {3}
    torch.testing.assert_close(torch.tensor([s[1] for s in seen]), sigmas[start:-1] * 1000)
    x0 = _image_tokens(pipe, image)
    noise = randn_tensor(x0.shape, generator=_gen(7), dtype=torch.float32)
    first_input, first_t = denoiser_inputs[0]
    torch.testing.assert_close(first_input, noised(x0, noise, sigmas[start]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(first_t, sigmas[start].expand(1))


def test_lower_strength_stays_closer_to_the_image(pipe, img2img):
    image = _picture(seed=2)
    x0 = _image_tokens(pipe, image).reshape(1, 4, 4, 128).permute(0, 3, 1, 2)
    kw = dict(num_inference_steps=8, output_type="latent", generator=_gen(3))
    far = [(img2img("a cat", image=image, strength=s, **kw).images - x0).norm() for s in (0.2, 0.5, 1.0)]
    assert far[0] < far[1] < far[2]


def test_one_image_per_prompt_and_a_resize(pipe, img2img):
    a, b = _picture(seed=3), _picture(seed=4)
    kw = dict(strength=0.5, num_inference_steps=2, output_type="np")
    both = img2img(["x", "y"], image=[a, b], generator=[_gen(1), _gen(2)], **kw).images
    alone = img2img("y", image=b, generator=_gen(2), **kw).images
    np.testing.assert_allclose(both[1], alone[0], atol=1e-5)  # row k is drawn from image k
    shared = img2img(["x", "y"], image=a, num_images_per_prompt=2, generator=_gen(1), **kw).images
    assert shared.shape == (4, 64, 64, 3)
    resized = img2img("x", image=a, height=32, width=48, generator=_gen(1), **kw | {"output_type": "pil"})
    assert resized.images[0].size == (48, 32)
    as_tensor = torch.from_numpy(np.asarray(a, dtype=np.float32) / 255).permute(
        2, 0, 1
    )  # (3, H, W) in [0, 1]
    from_tensor = img2img("x", image=as_tensor, generator=_gen(1), **kw).images
    from_pil = img2img("x", image=a, generator=_gen(1), **kw).images
    np.testing.assert_allclose(from_tensor, from_pil, atol=1e-5)


def test_from_pipe_shares_the_very_same_modules(pipe):
    for cls in (LensImg2ImgPipeline, LensInpaintPipeline):
        derived = cls.from_pipe(pipe)
        assert type(derived) is cls
        assert all(getattr(derived, name) is getattr(pipe, name) for name in COMPONENTS)
        assert (derived.config.default_height, derived.config.default_steps) == (64, 4)
        back = LensPipeline.from_pipe(derived)
        assert type(back) is LensPipeline and back.transformer is pipe.transformer


def test_from_pipe_keeps_a_bf16_pipeline_bf16():
    half = tiny_random_pipeline().to(dtype=torch.bfloat16)
    derived = LensImg2ImgPipeline.from_pipe(half)  # diffusers' default would cast the shared modules to fp32
    assert derived.transformer is half.transformer and half.transformer.dtype == torch.bfloat16
    assert half.vae.dtype == torch.bfloat16


def test_save_and_load_in_the_released_layout(pipe, img2img, tmp_path):
    from diffusers import DiffusionPipeline

    from lens import registration

    img2img.save_pretrained(tmp_path / "i2i")
    index = json.loads((tmp_path / "i2i" / "model_index.json").read_text())
    assert index["_class_name"] == "LensImg2ImgPipeline"
    assert index["transformer"] == ["diffusers", "LensTransformer2DModel"]
    assert index["text_encoder"] == ["transformers", "LensGptOssEncoder"]
    loaded = DiffusionPipeline.from_pretrained(tmp_path / "i2i")
    assert type(loaded) is LensImg2ImgPipeline
    kw = dict(image=_picture(), strength=0.5, num_inference_steps=2, output_type="np")
    np.testing.assert_allclose(
        loaded("a star", generator=_gen(5), **kw).images,
        img2img("a star", generator=_gen(5), **kw).images,
        atol=1e-5,
    )
    pipe.save_pretrained(tmp_path / "t2i")  # a text-to-image folder loads as the inpainting pipeline
    assert type(LensInpaintPipeline.from_pretrained(tmp_path / "t2i")) is LensInpaintPipeline
    for name, cls in (
        ("LensImg2ImgPipeline", LensImg2ImgPipeline),
        ("LensInpaintPipeline", LensInpaintPipeline),
    ):
        assert registration._lens_attribute(name) is cls  # what `import lens` alone resolves


@pytest.mark.parametrize("output_type", ["pil", "np", "pt", "latent"])
def test_output_types(img2img, output_type):
    out = img2img("x", image=_picture(32, 48), num_inference_steps=2, output_type=output_type).images
    if output_type == "pil":
        assert len(out) == 1 and out[0].size == (48, 32)
    else:
        shape = {"np": (1, 32, 48, 3), "pt": (1, 3, 32, 48), "latent": (1, 128, 2, 3)}
        assert tuple(out.shape) == shape[output_type]


def test_diffusers_callbacks_work_on_the_shortened_schedule(img2img, pipe, denoiser_inputs):
    from diffusers.callbacks import SDCFGCutoffCallback

    cutoff = SDCFGCutoffCallback(cutoff_step_ratio=0.5)  # CFG off after half of num_timesteps (4 here)
    img2img(
        "x",
        image=_picture(),
        strength=0.5,
        num_inference_steps=8,
        guidance_scale=3.0,
        callback_on_step_end=cutoff,
    )
    assert img2img.num_timesteps == 4 and len(denoiser_inputs) == 3 * 2 + 1


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(strength=0), r"strength must be a number in \(0, 1\]"),
        (dict(strength=1.5), "got 1.5"),
        (dict(strength=float("nan")), "got nan"),
        (dict(strength=True), "got True"),
        (dict(strength="0.5"), "got '0.5'"),
        (dict(strength=1e-17), "leaves none of the 4 steps"),
        (dict(image=None), "image is required"),
        (dict(image=3), "image must be a PIL image"),
        (dict(image="photo.png"), "PIL.Image.open"),
        (
            dict(image=_picture(100, 64)),
            r"the image is 100x64 \(HxW\): height=100 is not a multiple of 16.*resize",
        ),
        (dict(image=_picture(2048, 4096)), "above the limit"),
        (dict(height=48), "both height and width"),
        (dict(height=40, width=48), "height=40 is not a multiple of 16"),
        (dict(image=[_picture(), _picture(), _picture()]), "3 images for 1 prompts"),
        (dict(image=np.zeros((64, 64, 4), np.float32)), "RGB"),
        (dict(output_type="jpeg"), "output_type"),
    ],
)
def test_bad_input_is_refused_before_any_model_runs(img2img, denoiser_inputs, kwargs, words):
    with pytest.raises(LensError, match=words):
        img2img(**(dict(prompt="x", image=_picture(), num_inference_steps=4) | kwargs))
    assert denoiser_inputs == []
