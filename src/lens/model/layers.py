"""Small building blocks of the Lens MMDiT: timestep embedding, SwiGLU MLP, modulation, output norm."""

from __future__ import annotations

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
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
    """Bias-free gated MLP: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(nn.functional.silu(self.w1(x)) * self.w3(x))


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
