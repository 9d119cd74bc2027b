"""LensInpaintPipeline on tiny random components: kept tokens end as the image's latents, masked ones
are redrawn, the known region is re-noised to the current sigma each step, the mask's token grid."""

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor

from lens.errors import LensError
from lens.image_inputs import first_step, prepare_mask
from lens.inpaint import LensInpaintPipeline
from lens.latents import LatentCodec, to_tokens
from lens.sampling.schedule import noised, scheduler_sigmas
from lens.testing import tiny_random_pipeline

KW = dict(num_inference_steps=4, output_type="latent", guidance_scale=3.0)


@pytest.fixture(scope="module")
def pipe():
    return tiny_random_pipeline()


@pytest.fixture(scope="module")
def inpaint(pipe):
    return LensInpaintPipeline.from_pipe(pipe)


@pytest.fixture(scope="module")
def image():
    return PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def x0(pipe, image):
    """(1, 16, 128): the image's own normalised latent tokens (4 x 4 grid), computed without the pipeline."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    with torch.no_grad():
        return to_tokens(LatentCodec(pipe.vae).encode(pixels)).float()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _mask(white_box=None, size=(64, 64)) -> PIL.Image.Image:
    """Black (keep) with a white (repaint) box (left, top, right, bottom) in pixels."""
    mask = PIL.Image.new("L", size[::-1], 0)
    if white_box is not None:
        mask.paste(255, white_box)
    return mask


def _tokens(grid: torch.Tensor) -> torch.Tensor:
    return to_tokens(grid)  # (1, 128, 4, 4) latents -> (1, 16, 128)


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    # The pipeline puts its own x0 back exactly (x0 * 1 + latents * 0); this test's x0 is computed
    # independently (pixels / 127.5 - 1 rather than diffusers' 2 * (pixels / 255) - 1), hence atol.
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_an_all_black_mask_gives_back_the_image_latents(inpaint, image, x0, strength):
    out = inpaint("a cat", image=image, mask_image=_mask(), strength=strength, generator=_gen(), **KW).images
    _close(_tokens(out), x0)


def test_kept_tokens_are_the_image_and_masked_ones_are_redrawn(inpaint, image, x0):
    out = inpaint("a cat", image=image, mask_image=_mask((0, 0, 32, 64)), generator=_gen(1), **KW).images
    tokens = _tokens(out)[0].reshape(4, 4, 128)  # (row, column, channel)
    reference = x0[0].reshape(4, 4, 128)
    _close(tokens[:, 2:], reference[:, 2:])  # the right half (black) is kept
    change = (tokens[:, :2] - reference[:, :2]).norm(dim=-1)  # the left half (white) is drawn anew
    assert (change > 0.1 * reference[:, :2].norm(dim=-1)).all()


def test_kept_tokens_follow_the_image_noised_to_each_new_sigma(pipe, inpaint, image, x0):
    steps, strength, seen = 5, 0.8, []

    def callback(p, i, t, tensors):
        seen.append(tensors["latents"].clone())
        return {}

    kw = dict(num_inference_steps=steps, guidance_scale=1.0, output_type="latent")
    mask = _mask((0, 0, 16, 16))  # only token (0, 0) is repainted
    inpaint(
        "x",
        image=image,
        mask_image=mask,
        strength=strength,
        generator=_gen(2),
        callback_on_step_end=callback,
        **kw,
    )
    start = first_step(steps, strength)
    sigmas = scheduler_sigmas(pipe.scheduler, steps, 16)
    noise = randn_tensor(x0.shape, generator=_gen(2), dtype=torch.float32)
    assert len(seen) == steps - start
    for i, latents in enumerate(seen):  # after step i the level is sigmas[start + i + 1] (0 after the last)
        expected = noised(x0, noise, sigmas[start + i + 1])
        _close(latents[:, 1:], expected[:, 1:])
        assert not torch.allclose(latents[:, :1], expected[:, :1], atol=1e-3)


def test_an_all_white_mask_at_strength_one_is_text_to_image(pipe, inpaint, image):
    text_to_image = pipe("a dog", generator=_gen(3), **KW).images
    white = inpaint("a dog", image=image, mask_image=_mask((0, 0, 64, 64)), generator=_gen(3), **KW).images
    assert torch.equal(white, text_to_image)


def test_the_mask_on_the_token_grid():
    # a 20 x 20 white square touches tokens (0, 0), (0, 1), (1, 0), (1, 1) of the 4 x 4 grid
    tokens = prepare_mask(_mask((0, 0, 20, 20)), (64, 64), rows=1)
    assert tokens.shape == (1, 16, 1)
    expected = torch.zeros(4, 4)
    expected[:2, :2] = 1
    assert torch.equal(tokens[0, :, 0].reshape(4, 4), expected)
    grey = PIL.Image.new("L", (64, 64), 100)  # below half: binarised to keep
    assert prepare_mask(grey, (64, 64), 1).sum() == 0
    # a smaller mask is resized to the image; arrays in [0, 1] and (B, 1, H, W) tensors work too
    half = prepare_mask(_mask((0, 0, 16, 32), size=(32, 32)), (64, 64), 1)[0, :, 0].reshape(4, 4)
    assert half[:, :2].all() and not half[:, 2:].any()
    array = np.zeros((64, 64), np.float32)
    array[48:, 48:] = 1
    assert prepare_mask(array, (64, 64), 1)[0, :, 0].nonzero().flatten().tolist() == [15]
    tensor = torch.from_numpy(array)[None, None].repeat(2, 1, 1, 1)
    assert prepare_mask(tensor, (64, 64), 2).shape == (2, 16, 1)


def test_one_mask_per_prompt(inpaint, image, x0):
    masks = [_mask(), _mask((0, 0, 64, 64))]  # keep all of the first, repaint all of the second
    out = inpaint(["a", "b"], image=image, mask_image=masks, generator=[_gen(1), _gen(2)], **KW).images
    _close(_tokens(out[:1]), x0)
    assert not torch.allclose(_tokens(out[1:]), x0, atol=0.1)


def test_output_is_an_image_of_the_image_size(inpaint, image):
    out = inpaint("x", image=image, mask_image=_mask((0, 0, 32, 32)), num_inference_steps=2).images
    assert out[0].size == (64, 64)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(mask_image=None), "mask_image is required"),
        (dict(mask_image="mask.png"), "mask_image: Input is in incorrect format"),
        (dict(mask_image=[_mask(), _mask(), _mask()]), "3 images for 1 prompts"),
        (dict(mask_image=np.zeros((2, 3, 64, 64), np.float32)), "one channel"),
        (dict(strength=0.0), "strength must be"),
    ],
)
def test_bad_masks_are_refused(inpaint, image, kwargs, words):
    with pytest.raises(LensError, match=words):
        inpaint(**(dict(prompt="x", image=image, mask_image=_mask()) | kwargs))
