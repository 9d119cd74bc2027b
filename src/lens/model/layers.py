"""Small building blocks of the Lens MMDiT: timestep embedding, SwiGLU MLP, modulation, output norm."""

from __future__ import annotations

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from einops import rearrange
from torch import Tensor, nn


class LensTimestepEmbedding(nn.Module):
    """sigma in [0, 1] -> temb (n, dim): sinusoid of 1000*sigma (256 ch, cos first), Linear-SiLU-Linear.

    `temb` depends on the timestep only: Lens has no pooled text vector and no guidance embedding.
    """

    def __init__(self, dim: int, freq_channels: int = 256):
        super().__init__()
        self.time_proj = Timesteps(freq_channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.timestep_embedder = TimestepEmbedding(freq_channels, dim)

    def forward(self, sigma: Tensor, dtype: torch.dtype) -> Tensor:
        freqs = self.time_proj(sigma.float() * 1000.0)  # (n, 256), float32
        return self.timestep_embedder(freqs.to(dtype))


class SwiGLU(nn.Module):
    """Bias-free gated MLP: w2(silu(w1 x) * w3 x).

    With `conv_kernel` k > 0 (image stream only; not in Lens) the hidden features [w1 x, w3 x] also
    pass a depthwise k x k convolution over the token grid before the gate, as Sana's Mix-FFN
    (GLUMBConv) does: a local, translation-equivariant mixing that attention has to learn from data.
    The convolution starts as the identity, so at init the MLP is the plain SwiGLU.
    """

    def __init__(self, dim: int, hidden: int, conv_kernel: int = 0):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.conv = None
        if conv_kernel:
            self.conv = nn.Conv2d(
                2 * hidden, 2 * hidden, conv_kernel, padding=conv_kernel // 2, groups=2 * hidden
            )
            with torch.no_grad():
                nn.init.dirac_(self.conv.weight, groups=2 * hidden)
                self.conv.bias.zero_()

    def forward(self, x: Tensor, grids: tuple[tuple[int, int], ...] = ()) -> Tensor:
        gate, value = self.w1(x), self.w3(x)
        if self.conv is not None:
            gate, value = grid_conv(self.conv, torch.cat([gate, value], dim=-1), grids).chunk(2, dim=-1)
        return self.w2(nn.functional.silu(gate) * value)


def grid_conv(conv: nn.Conv2d, x: Tensor, grids: tuple[tuple[int, int], ...]) -> Tensor:
    """Apply a 2-D convolution to row-major image tokens x (B, N, C).

    `grids` holds one (h, w) shared by every row of a padded batch, or, for a pack (B == 1), each
    sample's grid in pack order; each sample is convolved on its own grid (zero padding at its edges).
    """
    if len(grids) == 1:
        h, w = grids[0]
        y = conv(rearrange(x, "b (h w) c -> b c h w", h=h, w=w))
        return rearrange(y, "b c h w -> b (h w) c")
    parts = x[0].split([h * w for h, w in grids])
    out = [
        rearrange(conv(rearrange(p, "(h w) c -> 1 c h w", h=h, w=w)), "1 c h w -> (h w) c")
        for p, (h, w) in zip(parts, grids)
    ]
    return torch.cat(out)[None]


def expand_to_tokens(per_sample: Tensor, segments: Tensor | None) -> Tensor:
    """Broadcast per-sample vectors (n, C) over tokens.

    Padded batches: (n, C) -> (n, 1, C), one sample per batch row. Packed sequences: `segments` (T,)
    holds each token's sample index, giving (1, T, C), so every token gets its own sample's vector.
    """
    if segments is None:
        return per_sample[:, None]
    return per_sample[segments][None]


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class OutputNorm(nn.Module):
    """Adaptive LayerNorm without affine; (scale, shift) = Linear(SiLU(temb)), diffusers' chunk order."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)

    def forward(self, x: Tensor, temb: Tensor, segments: Tensor | None) -> Tensor:
        emb = expand_to_tokens(self.linear(nn.functional.silu(temb)), segments)
        scale, shift = emb.chunk(2, dim=-1)
        return modulate(self.norm(x), shift, scale)
