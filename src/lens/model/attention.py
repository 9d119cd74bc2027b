"""The one place that chooses an attention kernel; every block calls `attention()`.

Masks the model builds (see `layout.py`):
- None: no padding anywhere, so SDPA runs its fused flash / memory-efficient kernels.
- a bool tensor (B, 1, 1, T) or (B, 1, T, T), True = may attend: padded text keys, or the
  block-diagonal mask of a packed sequence. SDPA with a bool mask trains on CPU and GPU.
- a FlexAttention `BlockMask`: the document mask of a pack when `pack_kernel` picks "flex" (the
  default on CUDA). Only the blocks where a sample meets itself are computed and nothing (T, T) is
  stored; SDPA with a (T, T) mask falls back to its math kernel on GPU and stores (heads, T, T) scores.
  On CUDA flex_attention runs compiled (fused forward and backward); on CPU it runs eagerly and has no
  backward, which is enough to check it against SDPA.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from lens.errors import LensError

KERNELS = ("auto", "sdpa", "flex")


def pack_kernel(kernel: str, device) -> str:
    """The kernel a pack attends with, "sdpa" or "flex"; "auto" is flex on CUDA, sdpa elsewhere."""
    if kernel not in KERNELS:
        raise LensError(f"attention_kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if kernel == "auto":
        return "flex" if torch.device(device).type == "cuda" else "sdpa"
    return kernel


@functools.cache
def _compiled_flex_attention():
    # eager flex_attention materialises the scores; compiled, it is one fused kernel (inside a
    # compiled block the outer compile traces through this one)
    return torch.compile(flex_attention)


def attention(q: Tensor, k: Tensor, v: Tensor, mask=None) -> Tensor:
    """Scaled dot-product attention over (B, H, T, D) tensors; returns (B, H, T, D)."""
    if mask is None or isinstance(mask, Tensor):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if isinstance(mask, BlockMask):
        flex = _compiled_flex_attention() if q.is_cuda else flex_attention
        return flex(q, k, v, block_mask=mask)
    raise TypeError(f"unsupported attention mask type {type(mask).__name__}")
