"""Fitting the nano VAE's latent normaliser and measuring what the VAE keeps.

FLUX.2 normalises the 128 patchified latent channels with the VAE's own BatchNorm running statistics
(`LatentCodec.normalize`). A VAE trained here never ran that BatchNorm, so its statistics are set
from the training latents directly: per channel mean and (population) variance of the patchified
posterior modes, which makes the denoiser's inputs about zero-mean and unit-variance.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from einops import rearrange
from PIL import Image
from torch import Tensor

from lens.errors import LensError
from lens.latents import LatentCodec, patchify


@torch.no_grad()
def raw_latents(vae, pixels: Tensor, batch_size: int = 32) -> Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, 128, H/16, W/16) patchified posterior modes, before normalisation."""
    parts = [
        patchify(vae.encode(pixels[i : i + batch_size]).latent_dist.mode())
        for i in range(0, len(pixels), batch_size)
    ]
    return torch.cat(parts)


@torch.no_grad()
def fit_latent_stats(vae, batches: Iterable[Tensor]) -> tuple[Tensor, Tensor]:
    """Set `vae.bn`'s running mean / var from the patchified latents of `batches` of pixels.

    Returns (mean, var), each (128,). The statistics are accumulated in float64 over every latent
    position of every image.
    """
    total = total_sq = None
    count = 0
    for pixels in batches:
        z = rearrange(raw_latents(vae, pixels).double(), "b c h w -> (b h w) c")  # (N, 128)
        total = z.sum(0) if total is None else total + z.sum(0)
        total_sq = z.pow(2).sum(0) if total_sq is None else total_sq + z.pow(2).sum(0)
        count += z.shape[0]
    if count == 0:
        raise LensError("fit_latent_stats needs at least one batch of images.")
    mean = total / count
    var = (total_sq / count - mean.pow(2)).clamp_min(0.0)
    bn = vae.bn
    bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
    bn.running_var.copy_(var.to(bn.running_var.dtype))
    bn.num_batches_tracked.fill_(1)
    return mean.float(), var.float()


@torch.no_grad()
def reconstruct(vae, pixels: Tensor, batch_size: int = 32) -> Tensor:
    """Pixels through `LatentCodec` encode -> decode (normalisation included): same shape, clamped."""
    codec = LatentCodec(vae)
    parts = [
        codec.decode(codec.encode(pixels[i : i + batch_size])) for i in range(0, len(pixels), batch_size)
    ]
    return torch.cat(parts).clamp(-1, 1)


def psnr(original: Tensor, recon: Tensor) -> Tensor:
    """Per-image PSNR in dB of images in [-1, 1] (measured on the [0, 1] scale): (B,)."""
    mse = ((original - recon) / 2).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


def comparison_image(original: Tensor, recon: Tensor, scale: int = 2) -> Image.Image:
    """Originals (top row) over reconstructions (bottom row), 2 px gaps, upscaled `scale`x (nearest)."""
    if original.shape != recon.shape:
        raise LensError(f"original {tuple(original.shape)} and reconstruction {tuple(recon.shape)} differ.")
    rows = []
    for batch in (original, recon):
        tiles = (batch.clamp(-1, 1) + 1) * 127.5  # (B, 3, H, W)
        tiles = torch.nn.functional.pad(tiles, (1, 1, 1, 1), value=255.0)
        rows.append(rearrange(tiles, "b c h w -> h (b w) c"))
    grid = torch.cat(rows).round().to(torch.uint8).numpy()
    image = Image.fromarray(np.ascontiguousarray(grid), "RGB")
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
