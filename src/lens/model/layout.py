"""How samples sit in the token sequences: RoPE tables, attention mask and per-token sample index.

Two layouts feed the same blocks:
- a padded batch: every row is one sample on the same (h, w) grid; text may be right-padded, which
  becomes a key mask (None when nothing is padded, so fused kernels run);
- a pack: samples of different sizes concatenated into one row (batch dim 1). The image stream is
  [img_0, img_1, ...], the text stream [txt_0, txt_1, ...]; a block-diagonal mask keeps samples apart,
  positions restart per sample, and `*_segments` let every token pick its own sample's modulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lens.model.rope import image_positions, rope_table, sincos_embedding, text_positions


@dataclass(frozen=True)
class Pack:
    """Describes a packed row: per-sample latent grids (h, w) and valid text lengths, in pack order."""

    image_grids: tuple[tuple[int, int], ...]
    text_lengths: tuple[int, ...]

    def __post_init__(self):
        if len(self.image_grids) != len(self.text_lengths) or not self.image_grids:
            raise ValueError(
                "a Pack needs one (h, w) grid and one text length per sample, at least one sample"
            )

    @property
    def image_tokens(self) -> int:
        return sum(h * w for h, w in self.image_grids)

    @property
    def text_tokens(self) -> int:
        return sum(self.text_lengths)


@dataclass
class SequenceLayout:
    rope: tuple[Tensor, Tensor]  # cos, sin: (1 | B, 1, N+S, head_dim/2), float32
    mask: Tensor | None  # bool, True = may attend; None = attend everywhere
    img_segments: Tensor | None = None  # (N,) sample index per image token (packs only)
    txt_segments: Tensor | None = None  # (S,)
    img_absolute: Tensor | None = None  # (N, width) absolute image positions (pos_embed="rope+sincos")


def batch_layout(
    grid: tuple[int, int],
    text_mask: Tensor | None,
    text_len: int,
    axes_dims,
    theta: float,
    device,
    absolute_dim: int = 0,
) -> SequenceLayout:
    """Layout of a padded batch on one grid; text_mask (B, S) bool or None (no padding).
    `absolute_dim` > 0 also gives the image tokens' (N, absolute_dim) sin/cos positions."""
    h, w = grid
    img_pos = image_positions(h, w, device)
    absolute = sincos_embedding(img_pos, absolute_dim) if absolute_dim else None
    pos = torch.cat([img_pos, text_positions(h, w, text_len, device)])
    cos, sin = rope_table(pos, axes_dims, theta)
    mask = None
    if text_mask is not None and not bool(text_mask.all()):
        image_keys = torch.ones(text_mask.shape[0], h * w, dtype=torch.bool, device=device)
        mask = torch.cat([image_keys, text_mask.to(device=device, dtype=torch.bool)], dim=1)[:, None, None, :]
    return SequenceLayout(rope=(cos[None, None], sin[None, None]), mask=mask, img_absolute=absolute)


def pack_layout(pack: Pack, axes_dims, theta: float, device, absolute_dim: int = 0) -> SequenceLayout:
    """Layout of one packed row: block-diagonal mask over [all image tokens, all text tokens]."""
    img_pos = [image_positions(h, w, device) for h, w in pack.image_grids]
    absolute = sincos_embedding(torch.cat(img_pos), absolute_dim) if absolute_dim else None
    txt_pos = [text_positions(h, w, s, device) for (h, w), s in zip(pack.image_grids, pack.text_lengths)]
    cos, sin = rope_table(torch.cat(img_pos + txt_pos), axes_dims, theta)
    ids = torch.arange(len(pack.image_grids), device=device)
    img_seg = ids.repeat_interleave(torch.tensor([h * w for h, w in pack.image_grids], device=device))
    txt_seg = ids.repeat_interleave(torch.tensor(pack.text_lengths, device=device, dtype=torch.long))
    seg = torch.cat([img_seg, txt_seg])
    mask = (seg[:, None] == seg[None, :])[None, None]  # (1, 1, T, T)
    return SequenceLayout((cos[None, None], sin[None, None]), mask, img_seg, txt_seg, absolute)
