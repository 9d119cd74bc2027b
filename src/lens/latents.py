"""The FLUX.2 latent contract: the only module that knows how pixels become denoiser latents.

The FLUX.2 VAE (`AutoencoderKLFlux2`) gives 32 channels at 1/8 resolution. Lens, like FLUX.2, packs
2x2 latent pixels into one 128-channel token (channel order inside a token is (c, p_row, p_col)) and
normalises those 128 channels with the VAE's own BatchNorm running statistics (`vae.bn`, eps =
`batch_norm_eps`). There is no scaling_factor / shift_factor. So one token covers 16x16 pixels.

    pixels (B, 3, H, W) in [-1, 1]
      -> vae.encode(...).latent_dist.mode()   (B, 32, H/8, W/8)
      -> patchify                             (B, 128, H/16, W/16)
      -> normalize                            (B, 128, H/16, W/16)   what the denoiser sees
    and `decode` runs the exact inverse.

`vae.encode` / `vae.decode` do not touch `vae.bn`; the normalisation lives here, as in the FLUX.2
pipeline and the BFL reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from einops import rearrange
from torch import Tensor

from lens.errors import LensError

if TYPE_CHECKING:  # pragma: no cover
    from diffusers import AutoencoderKLFlux2

LATENT_CHANNELS = 32  # VAE latent channels
PATCH = 2  # 2x2 latent pixels per token
TOKEN_CHANNELS = LATENT_CHANNELS * PATCH * PATCH  # 128 channels per denoiser token
VAE_DOWNSAMPLE = 8  # pixels per latent pixel (per side)
PIXELS_PER_TOKEN = VAE_DOWNSAMPLE * PATCH  # 16: image sides must be multiples of this


def _check_4d(x: Tensor, what: str) -> None:
    if x.ndim != 4:
        raise LensError(f"{what} must be a 4-D tensor (B, C, H, W); got shape {tuple(x.shape)}.")


def patchify(z: Tensor) -> Tensor:
    """(B, C, h, w) -> (B, C*4, h/2, w/2); channel order inside a token is (c, p_row, p_col)."""
    _check_4d(z, "patchify input")
    if z.shape[-2] % PATCH or z.shape[-1] % PATCH:
        raise LensError(
            f"patchify needs even latent height and width; got {tuple(z.shape[-2:])}. "
            f"Use image sides that are multiples of {PIXELS_PER_TOKEN}."
        )
    # (B, 32, H/8, W/8) -> (B, 128, H/16, W/16)
    return rearrange(z, "b c (h ph) (w pw) -> b (c ph pw) h w", ph=PATCH, pw=PATCH)


def unpatchify(z: Tensor) -> Tensor:
    """Exact inverse of `patchify`: (B, C*4, h, w) -> (B, C, 2h, 2w)."""
    _check_4d(z, "unpatchify input")
    if z.shape[1] % (PATCH * PATCH):
        raise LensError(f"unpatchify needs a channel count divisible by 4; got {z.shape[1]}.")
    # (B, 128, H/16, W/16) -> (B, 32, H/8, W/8)
    return rearrange(z, "b (c ph pw) h w -> b c (h ph) (w pw)", ph=PATCH, pw=PATCH)


def to_tokens(z: Tensor) -> Tensor:
    """(B, C, h, w) -> (B, h*w, C), tokens in row-major order (row 0 left to right, then row 1...)."""
    _check_4d(z, "to_tokens input")
    return rearrange(z, "b c h w -> b (h w) c")


def from_tokens(tokens: Tensor, h: int, w: int) -> Tensor:
    """Inverse of `to_tokens`: (B, h*w, C) -> (B, C, h, w)."""
    if tokens.ndim != 3:
        raise LensError(f"from_tokens needs a 3-D tensor (B, N, C); got shape {tuple(tokens.shape)}.")
    if tokens.shape[1] != h * w:
        raise LensError(
            f"from_tokens got {tokens.shape[1]} tokens but h*w = {h}*{w} = {h * w}; pass the latent "
            "grid size the tokens were made from."
        )
    return rearrange(tokens, "b (h w) c -> b c h w", h=h, w=w)


class LatentCodec:
    """Pixels <-> normalised 128-channel latents through a FLUX.2 VAE.

    Gradients are left to the caller: wrap calls in `torch.no_grad()` / `torch.inference_mode()` when
    the VAE is frozen (it always is in Lens).
    """

    def __init__(self, vae: AutoencoderKLFlux2):
        cfg = vae.config
        if tuple(cfg.patch_size) != (PATCH, PATCH) or cfg.latent_channels != LATENT_CHANNELS:
            raise LensError(
                f"LatentCodec needs a FLUX.2 VAE with latent_channels={LATENT_CHANNELS} and patch_size="
                f"({PATCH}, {PATCH}); got latent_channels={cfg.latent_channels}, patch_size={cfg.patch_size}."
            )
        down = 2 ** (len(cfg.block_out_channels) - 1)
        if down != VAE_DOWNSAMPLE:
            raise LensError(
                f"LatentCodec needs a VAE with {VAE_DOWNSAMPLE}x downsampling (4 blocks); this one "
                f"downsamples {down}x (block_out_channels={tuple(cfg.block_out_channels)})."
            )
        self.vae = vae
        self.eps = float(cfg.batch_norm_eps)

    @property
    def device(self) -> torch.device:
        """Where the VAE computes. Under model CPU offload its weights sit on the CPU until accelerate's
        hook loads them, and diffusers' `encode` / `decode` hooks move the weights but not the inputs,
        so inputs go to the hook's execution device, not to `vae.device`."""
        device = getattr(getattr(self.vae, "_hf_hook", None), "execution_device", None)
        return torch.device(device) if device is not None else self.vae.device

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """BatchNorm running mean and std, float32, shaped (1, 128, 1, 1) on `like`'s device."""
        bn = self.vae.bn
        mean = bn.running_mean.to(device=like.device, dtype=torch.float32)
        std = torch.sqrt(bn.running_var.to(device=like.device, dtype=torch.float32) + self.eps)
        return rearrange(mean, "c -> 1 c 1 1"), rearrange(std, "c -> 1 c 1 1")

    def _check_tokens(self, z: Tensor, what: str) -> None:
        _check_4d(z, what)
        if z.shape[1] != TOKEN_CHANNELS:
            raise LensError(
                f"{what} must have {TOKEN_CHANNELS} channels (patchified FLUX.2 latents); got {z.shape[1]}."
            )

    def normalize(self, z: Tensor) -> Tensor:
        """(B, 128, h, w) raw patchified latents -> (z - mean) / sqrt(var + eps), in z's dtype."""
        self._check_tokens(z, "normalize input")
        mean, std = self._stats(z)
        return ((z.float() - mean) / std).to(z.dtype)

    def denormalize(self, z: Tensor) -> Tensor:
        """Exact inverse of `normalize`: z * sqrt(var + eps) + mean, in z's dtype."""
        self._check_tokens(z, "denormalize input")
        mean, std = self._stats(z)
        return (z.float() * std + mean).to(z.dtype)

    def encode(self, pixels: Tensor) -> Tensor:
        """(B, 3, H, W) pixels in [-1, 1] -> (B, 128, H/16, W/16) normalised latents (VAE dtype).

        Uses the posterior mode (deterministic), as Lens/FLUX.2 training does.
        """
        _check_4d(pixels, "pixels")
        if pixels.shape[1] != 3:
            raise LensError(f"pixels must have 3 channels (RGB); got {pixels.shape[1]}.")
        height, width = pixels.shape[-2:]
        if height % PIXELS_PER_TOKEN or width % PIXELS_PER_TOKEN:
            raise LensError(
                f"image size {height}x{width} is not a multiple of {PIXELS_PER_TOKEN}; resize or crop "
                f"both sides to multiples of {PIXELS_PER_TOKEN} (e.g. {height // 16 * 16}x{width // 16 * 16})."
            )
        pixels = pixels.to(device=self.device, dtype=self.vae.dtype)
        z = self.vae.encode(pixels).latent_dist.mode()  # (B, 32, H/8, W/8)
        return self.normalize(patchify(z))  # (B, 128, H/16, W/16)

    def decode(self, latents: Tensor) -> Tensor:
        """(B, 128, h, w) normalised latents -> (B, 3, 16h, 16w) pixels in about [-1, 1] (VAE dtype)."""
        self._check_tokens(latents, "decode input")
        latents = latents.to(device=self.device, dtype=self.vae.dtype)
        z = unpatchify(self.denormalize(latents))  # (B, 32, 2h, 2w)
        return self.vae.decode(z).sample  # (B, 3, 16h, 16w)


def tiny_flux2_vae(seed: int = 0, **overrides) -> AutoencoderKLFlux2:
    """A few-hundred-KB random `AutoencoderKLFlux2` for tests: 32 latent channels, 8x downsampling.

    Its BatchNorm running statistics are set to non-trivial values (random means, variances far from
    1) so that normalisation is really exercised. `overrides` go to the constructor. The global RNG
    is left untouched.
    """
    from diffusers import AutoencoderKLFlux2

    config = {
        "block_out_channels": (8, 16, 16, 16),
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "latent_channels": LATENT_CHANNELS,
        "sample_size": 64,
    }
    config.update(overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKLFlux2(**config)
        n = vae.bn.num_features
        vae.bn.running_mean.copy_(0.5 * torch.randn(n))
        vae.bn.running_var.copy_(torch.empty(n).uniform_(0.25, 4.0))
    return vae.eval()
