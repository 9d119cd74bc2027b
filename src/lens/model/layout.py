"""How samples sit in the token sequences: RoPE tables, attention mask and per-token sample index.

Two layouts feed the same blocks:
- a padded batch: every row is one sample on the same (h, w) grid; text may be right-padded, which
  becomes a key mask (None when nothing is padded, so fused kernels run);
- a pack: samples of different sizes concatenated into one row (batch dim 1). The image stream is
  [img_0, img_1, ...], the text stream [txt_0, txt_1, ...]; a document mask keeps samples apart,
  positions restart per sample, and `*_segments` let every token pick its own sample's modulation.
  The mask is the kernel's (`attention.pack_kernel`): a dense (1, 1, T, T) bool tensor for SDPA, or a
  FlexAttention `BlockMask` built from per-block sample counts, which never holds anything T x T.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask

from lens.model.attention import pack_kernel
from lens.model.rope import (
    grounded_text_positions,
    image_positions,
    rope_table,
    sincos_embedding,
    text_positions,
)


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
    mask: Tensor | BlockMask | None  # bool, True = may attend; a pack's BlockMask; None = attend everywhere
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
    text_places: Tensor | None = None,
) -> SequenceLayout:
    """Layout of a padded batch on one grid; text_mask (B, S) bool or None (no padding).
    `absolute_dim` > 0 also gives the image tokens' (N, absolute_dim) sin/cos positions;
    `text_places` (B, S, 2) grounds text tokens at image places (`grounded_text_positions`), which
    makes the RoPE tables per sample: (B, 1, N+S, head_dim/2)."""
    h, w = grid
    img_pos = image_positions(h, w, device)
    absolute = sincos_embedding(img_pos, absolute_dim) if absolute_dim else None
    if text_places is None:
        cos, sin = rope_table(torch.cat([img_pos, text_positions(h, w, text_len, device)]), axes_dims, theta)
        cos, sin = cos[None], sin[None]
    else:
        txt_pos = grounded_text_positions(h, w, text_places.to(device))  # (B, S, 3)
        pos = torch.cat([img_pos[None].expand(txt_pos.shape[0], -1, -1), txt_pos], dim=1)
        cos, sin = rope_table(pos, axes_dims, theta)  # (B, N+S, head_dim/2)
    mask = None
    if text_mask is not None and not bool(text_mask.all()):
        image_keys = torch.ones(text_mask.shape[0], h * w, dtype=torch.bool, device=device)
        mask = torch.cat([image_keys, text_mask.to(device=device, dtype=torch.bool)], dim=1)[:, None, None, :]
    return SequenceLayout(rope=(cos[:, None], sin[:, None]), mask=mask, img_absolute=absolute)


def pack_layout(
    pack: Pack,
    axes_dims,
    theta: float,
    device,
    absolute_dim: int = 0,
    kernel: str = "auto",
    text_places: Tensor | None = None,
) -> SequenceLayout:
    """Layout of one packed row over [all image tokens, all text tokens]; `kernel` as in `pack_kernel`;
    `text_places` (sum S_i, 2) grounds text tokens at their own sample's image places."""
    img_pos = [image_positions(h, w, device) for h, w in pack.image_grids]
    absolute = sincos_embedding(torch.cat(img_pos), absolute_dim) if absolute_dim else None
    if text_places is None:
        txt_pos = [text_positions(h, w, s, device) for (h, w), s in zip(pack.image_grids, pack.text_lengths)]
    else:
        parts = text_places.to(device).split(list(pack.text_lengths))
        txt_pos = [grounded_text_positions(h, w, p[None])[0] for (h, w), p in zip(pack.image_grids, parts)]
    cos, sin = rope_table(torch.cat(img_pos + txt_pos), axes_dims, theta)
    ids = torch.arange(len(pack.image_grids), device=device)
    img_seg = ids.repeat_interleave(torch.tensor([h * w for h, w in pack.image_grids], device=device))
    txt_seg = ids.repeat_interleave(torch.tensor(pack.text_lengths, device=device, dtype=torch.long))
    seg = torch.cat([img_seg, txt_seg])
    if pack_kernel(kernel, device) == "flex":
        mask = document_block_mask(seg, len(pack.image_grids))
    else:
        mask = (seg[:, None] == seg[None, :])[None, None]  # (1, 1, T, T)
    return SequenceLayout((cos[None, None], sin[None, None]), mask, img_seg, txt_seg, absolute)


def document_block_mask(seg: Tensor, samples: int, block_size: int = 128) -> BlockMask:
    """FlexAttention mask "a token attends to the tokens of its own sample", seg (T,) its sample ids.

    Equal to `create_block_mask(lambda b, h, q, k: seg[q] == seg[k], None, None, T, T)`, which builds
    the (T, T) bool tensor first; here the block structure comes from the (blocks, samples) token
    counts: a block pair is computed where both blocks hold a token of one sample, and skips
    `mask_mod` (a full block) where both are whole blocks of that one sample alone. 128 is
    FlexAttention's default block, which its CUDA kernels tile.
    """
    tokens = seg.numel()
    blocks = -(-tokens // block_size)
    block_of = torch.arange(tokens, device=seg.device) // block_size
    counts = torch.zeros(blocks, samples, device=seg.device)
    counts.index_put_((block_of, seg), torch.ones(tokens, device=seg.device), accumulate=True)
    present = (counts > 0).float()
    meet = present @ present.T > 0  # (blocks, blocks): some sample has tokens in both
    whole = counts.amax(dim=1) == block_size  # block_size tokens, all of one sample
    owner = counts.argmax(dim=1)
    full = whole[:, None] & whole[None, :] & (owner[:, None] == owner[None, :])

    def ordered(dense: Tensor) -> tuple[Tensor, Tensor]:  # per query block: count, then kv block indices
        dense = dense.int()[None, None]
        order = torch.argsort(dense, dim=-1, descending=True, stable=True)
        return dense.sum(-1).int(), order.int()

    def same_sample(b, h, q, k):
        return seg[q] == seg[k]

    return BlockMask.from_kv_blocks(
        *ordered(meet & ~full),
        *ordered(full),
        BLOCK_SIZE=block_size,
        mask_mod=same_sample,
        seq_lengths=(tokens, tokens),
    )
