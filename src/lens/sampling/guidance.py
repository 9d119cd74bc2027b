"""Classifier-free guidance with per-token norm rescaling, as Lens samples.

comb = uncond + scale * (cond - uncond), then each token of comb is rescaled so that its L2 norm over
the channels (last dim) equals that of the conditional prediction: comb * |cond| / |comb|. This keeps
the guided velocity at the conditional magnitude, so large scales change direction, not size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lens.errors import LensError


def apply_cfg(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """Guided prediction (..., C) with per-token norm equal to cond's; returned in cond's dtype.

    `cond` and `uncond` have the same shape, channels last (e.g. (B, N, 128) velocities). Where the
    combination is exactly zero the output stays zero (no NaN). scale == 1 returns `cond` itself.
    """
    if cond.shape != uncond.shape:
        raise LensError(
            f"cond and uncond predictions must have the same shape; got {tuple(cond.shape)} and "
            f"{tuple(uncond.shape)}."
        )
    if scale == 1:
        return cond
    c = cond.float()
    u = uncond.float()
    comb = u + scale * (c - u)  # (..., C)
    cond_norm = torch.linalg.vector_norm(c, dim=-1, keepdim=True)  # (..., 1)
    comb_norm = torch.linalg.vector_norm(comb, dim=-1, keepdim=True)  # (..., 1)
    # Where comb is all zeros any finite factor keeps it zero; use 1 so neither value nor grad is NaN.
    safe_norm = torch.where(comb_norm > 0, comb_norm, torch.ones_like(comb_norm))
    return (comb * (cond_norm / safe_norm)).to(cond.dtype)
