"""Nano VAE: FLUX.2's class at small width, trained on world images, with fitted latent statistics."""

from __future__ import annotations

import pytest
import torch

from lens.errors import LensError
from lens.latents import LatentCodec
from lens.nano.corpus import crops, world_images
from lens.nano.latent_stats import comparison_image, fit_latent_stats, psnr, raw_latents, reconstruct
from lens.nano.vae import VAESpec, boost_chroma, nano_vae, train_vae, vae_loss

SPEC = VAESpec(block_out_channels=(8, 16, 16, 16), norm_num_groups=4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pixels():
    return world_images(0, 0, 8, 64, 64)


def test_world_images_and_crops_are_deterministic_pixels():
    a, b = world_images(3, 5, 2, 64, 96), world_images(3, 5, 2, 64, 96)
    assert a.shape == (2, 3, 64, 96) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1 and a.std() > 0.05
    c = crops(0, 0, 3, (64, 128), 64)
    assert c.shape == (3, 3, 64, 64) and torch.equal(c, crops(0, 0, 3, (64, 128), 64))
    with pytest.raises(LensError, match="crop"):
        crops(0, 0, 1, (32,), 64)


def test_is_the_flux2_latent_contract():
    vae = nano_vae(SPEC, seed=0)
    assert type(vae).__name__ == "AutoencoderKLFlux2" and vae.config.latent_channels == 32
    assert raw_latents(vae, torch.zeros(1, 3, 64, 64)).shape == (1, 128, 4, 4)
    LatentCodec(vae)  # accepts it: 8x down, 2x2 patches
    with pytest.raises(LensError, match="4 blocks"):
        nano_vae(VAESpec(block_out_channels=(8, 8, 8)))


def test_boost_chroma_scales_colour_and_keeps_grey():
    vae = nano_vae(SPEC, seed=0)
    w_in, w_out = (
        vae.encoder.conv_in.weight.clone(),
        vae.decoder.conv_out.weight.clone(),
    )  # (C, 3, k, k), (3, C, k, k)
    boost_chroma(vae, 2.0)
    grey = torch.full((1, 3, 8, 8), 0.3)
    colour = torch.tensor([1.0, -1.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 8, 8)  # zero grey component
    conv = torch.nn.functional.conv2d
    new_in = vae.encoder.conv_in.weight
    assert torch.allclose(conv(grey, new_in, padding=1), conv(grey, w_in, padding=1), atol=1e-6)
    assert torch.allclose(conv(colour, new_in, padding=1), 2 * conv(colour, w_in, padding=1), atol=1e-6)
    new_out = vae.decoder.conv_out.weight
    assert torch.allclose(new_out.mean(0), w_out.mean(0), atol=1e-6)  # the grey output is unchanged
    assert torch.allclose(new_out - new_out.mean(0), 2 * (w_out - w_out.mean(0)), atol=1e-6)


def test_training_reduces_reconstruction_loss(pixels):
    vae = nano_vae(SPEC, seed=0)

    def l1() -> float:  # deterministic reconstruction error on items the run never trains on
        with torch.no_grad():
            return (reconstruct(vae, pixels) - pixels).abs().mean().item()

    before = l1()
    assert vae_loss(vae, pixels, 1e-4, torch.Generator().manual_seed(0)) > 0.5
    log = train_vae(vae, seed=1, steps=60, batch_size=8, lr=3e-3, crop=32)
    assert l1() < 0.6 * before
    assert log.curve[-1][1] < log.curve[0][1]
    assert log.steps == 60 and not vae.training and not any(p.requires_grad for p in vae.parameters())


def test_fitted_stats_normalise_the_training_latents(pixels):
    vae = nano_vae(SPEC, seed=1)
    mean, var = fit_latent_stats(vae, [pixels[:5], pixels[5:]])  # batching does not matter
    raw = raw_latents(vae, pixels)
    assert torch.allclose(mean, raw.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(vae.bn.running_var, raw.var(dim=(0, 2, 3), unbiased=False), rtol=1e-4, atol=1e-7)
    z = LatentCodec(vae).encode(pixels)  # (8, 128, 4, 4)
    assert z.mean(dim=(0, 2, 3)).abs().max() < 1e-3
    assert ((z.var(dim=(0, 2, 3), unbiased=False) - 1).abs() < 0.05).all()
    # the codec's normalise / denormalise round trip is the plain VAE round trip
    direct = vae.decode(vae.encode(pixels).latent_dist.mode()).sample.clamp(-1, 1)
    assert torch.allclose(reconstruct(vae, pixels), direct, atol=1e-4)
    with pytest.raises(LensError, match="at least one batch"):
        fit_latent_stats(vae, [])


def test_psnr_and_comparison_picture(pixels):
    noisy = pixels + 0.02  # 0.01 on the [0, 1] scale: MSE 1e-4 -> 40 dB
    assert torch.allclose(psnr(pixels, noisy), torch.full((8,), 40.0), atol=1e-3)
    image = comparison_image(pixels[:3], noisy[:3], scale=2)
    assert image.size == (3 * 66 * 2, 2 * 66 * 2)
    assert image.getpixel((2 * 1 + 1, 2 * 1 + 1)) == tuple(
        round((v.item() + 1) * 127.5) for v in pixels[0, :, 0, 0]
    )
    with pytest.raises(LensError, match="differ"):
        comparison_image(pixels[:2], pixels[:3])
