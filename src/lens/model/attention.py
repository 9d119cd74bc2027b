"""The one place that chooses an attention kernel; every block calls `attention()`.

Masks the model builds (see `layout.py`):
- None: no padding anywhere, so SDPA runs its fused flash / memory-efficient kernels.
- a bool tensor (B, 1, 1, T) or (B, 1, T, T), True = may attend: padded text keys, or the
  block-diagonal mask of a packed sequence. SDPA with a bool mask trains on CPU and GPU.
- a FlexAttention `BlockMask` (packed sequences on GPU under torch.compile).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def attention(q: Tensor, k: Tensor, v: Tensor, mask=None) -> Tensor:
    """Scaled dot-product attention over (B, H, T, D) tensors; returns (B, H, T, D)."""
    if mask is None or isinstance(mask, Tensor):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    if isinstance(mask, BlockMask):
        return flex_attention(q, k, v, block_mask=mask)
    raise TypeError(f"unsupported attention mask type {type(mask).__name__}")
