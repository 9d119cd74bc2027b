"""Positions for the joint [image, text] sequence: rotary (REFERENCE section 3) and, optionally, absolute.

Three axes (frame, row, column) with 8 + 28 + 28 = 64 rotary dims, theta 10000, rotating adjacent
channel pairs (x[2i], x[2i+1]). Image tokens sit on a centred grid; text token j sits at
max(h//2, w//2) + j on all three axes, just past the image's extent. Tables are built in float32
outside the blocks and applied with real arithmetic (no complex tensors), so blocks compile cleanly.

Not in Lens, two options for small models (docs/nano-experiments.md):
- `grounded_text_positions` moves the text tokens of an object's phrase to that object's place on
  the image grid (row and column; the frame axis keeps the token's order), so an image token's query
  to the phrase is rotated by its offset from the object: what the nano learns at one place it
  computes at every place (tenth session).
- `sincos_embedding` is a parameter-free 2-D sin/cos embedding of each image token's centred
  (row, column), added to the image tokens when a model is built with `pos_embed="rope+sincos"`.
  RoPE gives a token its place only through offsets to other tokens; a small model needs the
  absolute place to follow "in the upper left".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def image_positions(h: int, w: int, device=None) -> Tensor:
    """(h*w, 3) float positions of an h x w token grid, row-major: (0, row, col), rows/cols centred."""
    rows = torch.arange(h, device=device, dtype=torch.float32) - (h - h // 2)
    cols = torch.arange(w, device=device, dtype=torch.float32) - (w - w // 2)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(h * w, 2)
    return torch.cat([torch.zeros(h * w, 1, device=device), grid], dim=-1)


def text_positions(h: int, w: int, length: int, device=None) -> Tensor:
    """(length, 3) positions of text tokens that follow an h x w image: max(h//2, w//2) + j on all axes."""
    idx = torch.arange(length, device=device, dtype=torch.float32) + max(h // 2, w // 2)
    return idx[:, None].expand(length, 3).contiguous()


def grounded_text_positions(h: int, w: int, places: Tensor) -> Tensor:
    """(B, S, 3) positions of text tokens of which some are grounded at an image place.

    places: (B, S, 2) float (x, y) fractions of the image width and height (the centre of the object
    a token's phrase names), NaN where a token is not grounded. Every token keeps its frame
    max(h//2, w//2) + j; a grounded token's row and column become the place's, in `image_positions`'
    coordinates (token i's centre is at (i + 0.5) / h of the side). Ungrounded tokens sit exactly
    where `text_positions` puts them.
    """
    b, s, _ = places.shape
    pos = text_positions(h, w, s, places.device)[None].expand(b, s, 3).clone()
    places = places.float()
    grounded = ~places.isnan().any(dim=-1)  # (B, S)
    row = places[..., 1] * h - 0.5 - (h - h // 2)
    col = places[..., 0] * w - 0.5 - (w - w // 2)
    pos[..., 1] = torch.where(grounded, row, pos[..., 1])
    pos[..., 2] = torch.where(grounded, col, pos[..., 2])
    return pos


def sincos_embedding(positions: Tensor, dim: int) -> Tensor:
    """(N, dim) float32 embedding of image positions (N, 3): sin/cos of the row over the first half of
    the channels, of the column over the second, at dim // 4 frequencies with periods 2 pi .. 200 pi."""
    if dim % 4:
        raise ValueError(f"a 2-D sin/cos embedding needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    freqs = torch.exp(
        -math.log(100.0) * torch.arange(quarter, device=positions.device, dtype=torch.float32) / quarter
    )
    halves = []
    for axis in (1, 2):  # row, column
        angle = positions[:, axis : axis + 1].float() * freqs  # (N, quarter)
        halves += [angle.sin(), angle.cos()]
    return torch.cat(halves, dim=-1)


def rope_table(
    positions: Tensor, axes_dims: tuple[int, ...], theta: float = 10000.0
) -> tuple[Tensor, Tensor]:
    """cos, sin tables for positions (..., T, n_axes): each (..., T, sum(axes_dims) // 2), float32."""
    if positions.shape[-1] != len(axes_dims):
        raise ValueError(f"positions have {positions.shape[-1]} axes but axes_dims has {len(axes_dims)}")
    angles = []
    for axis, dim in enumerate(axes_dims):
        inv_freq = theta ** -(torch.arange(0, dim, 2, device=positions.device, dtype=torch.float64) / dim)
        angles.append(positions[..., axis : axis + 1].double() * inv_freq)  # (..., T, dim/2)
    angle = torch.cat(angles, dim=-1)
    return angle.cos().float(), angle.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent channel pairs of x (B, H, T, D) by tables (.., T, D/2); math in float32."""
    pairs = x.float().unflatten(-1, (-1, 2))  # (B, H, T, D/2, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.flatten(-2).type_as(x)
