"""CFG with per-token norm rescaling to the conditional prediction."""

import pytest
import torch

from lens.errors import LensError
from lens.sampling.guidance import apply_cfg


def _pair(seed=0, shape=(2, 10, 128)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def test_norm_per_token_equals_conds():
    cond, uncond = _pair()
    out = apply_cfg(cond, uncond, 5.0)
    torch.testing.assert_close(out.norm(dim=-1), cond.norm(dim=-1), rtol=1e-5, atol=1e-6)
    comb = uncond + 5.0 * (cond - uncond)
    assert not torch.allclose(out, comb)  # the rescale really happened


def test_direction_equals_combination():
    cond, uncond = _pair(1)
    out = apply_cfg(cond, uncond, 3.0)
    comb = uncond + 3.0 * (cond - uncond)
    cos = torch.nn.functional.cosine_similarity(out, comb, dim=-1)
    torch.testing.assert_close(cos, torch.ones_like(cos), rtol=0, atol=1e-5)


def test_zero_combination_stays_zero_without_nan():
    cond, uncond = _pair(2, (1, 3, 8))
    uncond[0, 1] = 2 * cond[0, 1]  # with scale 2: comb = 2*cond - uncond = 0 for token 1
    out = apply_cfg(cond, uncond, 2.0)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0, 1], torch.zeros(8))
    torch.testing.assert_close(out[0, 0].norm(), cond[0, 0].norm())


def test_scale_one_is_identity():
    cond, uncond = _pair(3)
    assert torch.equal(apply_cfg(cond, uncond, 1.0), cond)


def test_keeps_dtype():
    cond, uncond = _pair(4)
    out = apply_cfg(cond.bfloat16(), uncond.bfloat16(), 5.0)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(
        out.float().norm(dim=-1), cond.bfloat16().float().norm(dim=-1), rtol=1e-2, atol=1e-2
    )


def test_shape_mismatch_raises():
    with pytest.raises(LensError, match="same shape"):
        apply_cfg(torch.zeros(1, 4, 128), torch.zeros(1, 5, 128), 5.0)
