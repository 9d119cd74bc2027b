"""The nano VAE: FLUX.2's `AutoencoderKLFlux2` at a few hundred thousand parameters, trained on world images.

The latent contract stays FLUX.2's (32 latent channels, 8x down in 4 blocks, 2x2 patch BatchNorm), so
`LatentCodec` and the pipeline use it unchanged; only the widths shrink. Training: L1 + L2
reconstruction of `mean + noise_scale * std * noise` plus a small KL term (per latent element,
`kl_weight`). Choices, each measured at 400 steps (held-out PSNR at 128 px):

- Colour is learnt last. World backgrounds are neutral and cover most pixels, so hue is a small share
  of the pixel variance; every variant first reproduced shapes in one sepia tone (blue shapes on dark
  backgrounds vanished), and hue appeared only after ~2,000 steps. Two fixes: windows centred on an
  object half of the time, from renders up to 256 px (more colour per window), and `boost_chroma`,
  an initialisation that scales the colour (non-grey) part of the first and last convolutions by 4
  (hue visible at 400 steps; 20.3 -> 21.5 dB).
- A quarter of the posterior noise trained ~1 dB better than the full sample, and keeps the decoder
  tolerant of small latent errors, which a denoiser makes.
- 32x32 windows gave the same PSNR per step as 64x64 ones at about a third of the cost; the VAE is
  convolutional (plus a mid-block attention), so it serves every image size the denoiser trains on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lens.errors import LensError
from lens.latents import LATENT_CHANNELS
from lens.nano.corpus import crops
from lens.nano.loop import TrainLog, train

CHROMA_GAIN = 4.0


@dataclass(frozen=True)
class VAESpec:
    block_out_channels: tuple[int, ...] = (16, 32, 32, 32)
    layers_per_block: int = 1
    norm_num_groups: int = 4
    mid_block_add_attention: bool = True


def nano_vae(spec: VAESpec = VAESpec(), seed: int = 0, sample_size: int = 64):
    """A freshly initialised `AutoencoderKLFlux2` sized by `spec` (eval mode; BatchNorm stats 0 / 1)."""
    from diffusers import AutoencoderKLFlux2

    if len(spec.block_out_channels) != 4:
        raise LensError(f"the nano VAE needs 4 blocks (8x downsampling), got {spec.block_out_channels}.")
    if any(c % spec.norm_num_groups for c in spec.block_out_channels):
        raise LensError(f"every block width must be divisible by norm_num_groups={spec.norm_num_groups}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKLFlux2(
            block_out_channels=tuple(spec.block_out_channels),
            layers_per_block=spec.layers_per_block,
            norm_num_groups=spec.norm_num_groups,
            mid_block_add_attention=spec.mid_block_add_attention,
            latent_channels=LATENT_CHANNELS,
            sample_size=sample_size,
        )
    boost_chroma(vae)
    return vae.eval()


@torch.no_grad()
def boost_chroma(vae, gain: float = CHROMA_GAIN) -> None:
    """Scale the chroma part (RGB minus its grey mean) of the encoder's input conv and the decoder's
    output conv by `gain`, leaving their response to grey unchanged."""
    grey = torch.full((3, 3), 1 / 3)
    colour = grey + gain * (torch.eye(3) - grey)  # (3, 3), symmetric
    w_in = vae.encoder.conv_in.weight  # (C, 3, k, k)
    w_in.copy_(torch.einsum("oikl,ij->ojkl", w_in, colour))
    w_out = vae.decoder.conv_out.weight  # (3, C, k, k)
    w_out.copy_(torch.einsum("ij,jokl->iokl", colour, w_out))
    vae.decoder.conv_out.bias.copy_(colour @ vae.decoder.conv_out.bias)


def vae_loss(
    vae, pixels: Tensor, kl_weight: float, generator: torch.Generator | None = None, noise_scale: float = 1.0
) -> Tensor:
    """L1 + L2 between pixels (B, 3, H, W) in [-1, 1] and the decoded posterior sample, + KL."""
    posterior = vae.encode(pixels).latent_dist
    noise = torch.randn(posterior.mean.shape, generator=generator)  # (B, 32, H/8, W/8)
    z = posterior.mean + noise_scale * posterior.std * noise
    recon = vae.decode(z).sample  # (B, 3, H, W)
    kl = posterior.kl().mean() / posterior.mean[0].numel()  # per latent element
    return (recon - pixels).abs().mean() + (recon - pixels).pow(2).mean() + kl_weight * kl


def train_vae(
    vae,
    *,
    seed: int,
    steps: int,
    batch_size: int = 16,
    lr: float = 3e-3,
    kl_weight: float = 1e-4,
    render_sizes: tuple[int, ...] = (64, 128, 256),
    crop: int = 32,
    noise_scale: float = 0.25,
    object_share: float = 0.5,
    deadline: float | None = None,
    log=None,
) -> TrainLog:
    """Train on items step * batch_size ... of stream `seed` (crop x crop windows of renders at
    `render_sizes`), then freeze (eval, requires_grad False). Returns the loss log."""
    vae.requires_grad_(True)
    generator = torch.Generator().manual_seed(seed)

    def loss_fn(step: int) -> Tensor:
        pixels = crops(
            seed, step * batch_size, batch_size, render_sizes, crop, object_share
        )  # (B, 3, crop, crop)
        return vae_loss(vae, pixels, kl_weight, generator, noise_scale)

    out = train(vae, loss_fn, steps=steps, lr=lr, weight_decay=0.0, deadline=deadline, log=log)
    vae.requires_grad_(False)
    return out
