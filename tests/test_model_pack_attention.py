"""How a pack attends: FlexAttention's BlockMask (the CUDA default) against SDPA's dense (T, T) mask.

On CPU FlexAttention runs eagerly (forward only) and applies `mask_mod` to every score, so the forward
comparison checks the mask function and the plumbing; the block structure, which only the CUDA kernels
use to skip work, is checked against torch's own `create_block_mask`.
"""

import pytest
import torch
from torch.nn.attention.flex_attention import BlockMask, create_block_mask

from lens.errors import LensError
from lens.model import block as block_module
from lens.model.attention import pack_kernel
from lens.model.layout import Pack, document_block_mask, pack_layout

# eager FlexAttention (the CPU path) says once that compiling it would fuse it
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

GRIDS, TEXT = ((3, 4), (2, 2), (1, 5), (4, 3)), (5, 0, 3, 7)


def _pack_inputs(grids, text, layers=2, dim=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, s = sum(h * w for h, w in grids), sum(text)
    return (
        torch.randn(1, n, 128, generator=g),
        torch.randn(1, s, layers, dim, generator=g),
        torch.rand(len(grids)),
    )


def test_flex_forward_equals_the_dense_mask(tiny_denoiser, monkeypatch):
    seen = []
    real = block_module.attention
    monkeypatch.setattr(block_module, "attention", lambda q, k, v, m=None: seen.append(m) or real(q, k, v, m))
    x, enc, t = _pack_inputs(GRIDS, TEXT)
    pack = Pack(GRIDS, TEXT)
    with torch.no_grad():  # FlexAttention has no backward on CPU
        dense = tiny_denoiser(x, enc, t, pack=pack, attention_kernel="sdpa").sample
        assert seen and all(isinstance(m, torch.Tensor) for m in seen)
        seen.clear()
        flex = tiny_denoiser(x, enc, t, pack=pack, attention_kernel="flex").sample
        assert seen and all(isinstance(m, BlockMask) for m in seen)
        seen.clear()
        auto = tiny_denoiser(x, enc, t, pack=pack).sample  # CPU: the dense mask, which trains
        assert all(isinstance(m, torch.Tensor) for m in seen)
    torch.testing.assert_close(flex, dense, atol=1e-5, rtol=1e-5)
    assert torch.equal(auto, dense)
    # samples stay apart under flex too: changing the last sample's text leaves the others alone
    enc[0, -1] += 10.0
    with torch.no_grad():
        moved = tiny_denoiser(x, enc, t, pack=pack, attention_kernel="flex").sample
    first = sum(h * w for h, w in GRIDS[:-1])
    torch.testing.assert_close(moved[:, :first], flex[:, :first], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(moved[:, first:], flex[:, first:], atol=1e-3)


def test_flex_selects_a_block_mask_not_a_token_by_token_tensor():
    pack = Pack(GRIDS, TEXT)
    tokens = pack.image_tokens + pack.text_tokens
    flex = pack_layout(pack, (2, 2, 4), 10000.0, "cpu", kernel="flex").mask
    assert isinstance(flex, BlockMask) and flex.shape == (1, 1, tokens, tokens)
    assert not any(isinstance(v, torch.Tensor) and v.numel() >= tokens * tokens for v in vars(flex).values())
    dense = pack_layout(pack, (2, 2, 4), 10000.0, "cpu", kernel="sdpa").mask
    assert dense.dtype == torch.bool and dense.shape == (1, 1, tokens, tokens)
    assert pack_kernel("auto", "cuda") == "flex" and pack_kernel("auto", torch.device("cpu")) == "sdpa"
    assert pack_kernel("flex", "cpu") == "flex" and pack_kernel("sdpa", "cuda") == "sdpa"
    with pytest.raises(LensError, match="attention_kernel"):
        pack_kernel("flash", "cpu")


def test_flex_is_for_packs_only(tiny_denoiser):
    x, enc, t = _pack_inputs(((3, 4),), (5,))
    assert tiny_denoiser(x, enc, t, image_grid=(3, 4), attention_kernel="sdpa").sample.shape == (1, 12, 128)
    with pytest.raises(LensError, match="for packs"):
        tiny_denoiser(x, enc, t, image_grid=(3, 4), attention_kernel="flex")


@pytest.mark.parametrize(
    "grids, text, block",
    [
        (GRIDS, TEXT, 4),  # T = 48: full, partial and empty blocks, one across the image/text seam
        (GRIDS, TEXT, 8),
        (((16, 16), (8, 8), (4, 4), (1, 3)), (20, 0, 9, 2), 128),  # T = 370 at the CUDA block size
        (((2, 3),), (1,), 128),  # one sample, one partial block
    ],
)
def test_document_block_mask_equals_create_block_mask(grids, text, block):
    pack = Pack(grids, text)
    ids = torch.arange(len(grids))
    seg = torch.cat(
        [
            ids.repeat_interleave(torch.tensor([h * w for h, w in grids])),
            ids.repeat_interleave(torch.tensor(text)),
        ]
    )
    tokens = seg.numel()
    ours = document_block_mask(seg, len(grids), block_size=block)
    reference = create_block_mask(
        lambda b, h, q, k: seg[q] == seg[k], None, None, tokens, tokens, device="cpu", BLOCK_SIZE=block
    )
    for name in ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices", "q_num_blocks"):
        assert torch.equal(getattr(ours, name), getattr(reference, name)), name
    assert torch.equal(ours.to_dense(), reference.to_dense())
    assert ours.seq_lengths == (tokens, tokens) == (pack.image_tokens + pack.text_tokens,) * 2
    q, k = torch.arange(tokens)[:, None], torch.arange(tokens)[None, :]
    assert torch.equal(ours.mask_mod(0, 0, q, k), seg[:, None] == seg[None, :])
    if block == 4:  # the case exercises every kind of block
        blocks = ours.to_dense()[0, 0]
        assert ours.full_kv_num_blocks.sum() > 0 and ours.kv_num_blocks.sum() > 0 and not blocks.all()
