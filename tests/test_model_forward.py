"""Forward semantics of the denoiser on a tiny random model."""

import math

import pytest
import torch

from lens.errors import LensError
from lens.model import block as block_module
from lens.model.layout import Pack
from lens.model.rope import apply_rope, image_positions, rope_table, sincos_embedding, text_positions
from lens.model.transformer import LensTransformer2DModel

from .conftest import TINY_DENOISER


def _inputs(b=2, h=3, w=4, s=5, layers=2, dim=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, h * w, 128, generator=g),
        torch.randn(b, s, layers, dim, generator=g),
        torch.rand(b, generator=g),
    )


def test_padded_text_is_invisible(tiny_denoiser):
    x, enc, t = _inputs()
    mask = torch.tensor([[True] * 3 + [False] * 2, [True] * 5])
    enc_garbage = enc.clone()
    enc_garbage[0, 3:] = 1e3  # padded positions must not matter
    out = tiny_denoiser(x, enc_garbage, t, image_grid=(3, 4), encoder_attention_mask=mask).sample
    alone = tiny_denoiser(x[:1], enc[:1, :3], t[:1], image_grid=(3, 4)).sample
    torch.testing.assert_close(out[:1], alone, atol=1e-5, rtol=1e-5)
    full = tiny_denoiser(x[1:], enc[1:], t[1:], image_grid=(3, 4)).sample
    torch.testing.assert_close(out[1:], full, atol=1e-5, rtol=1e-5)


def test_zero_text_tokens_equals_fully_masked_text(tiny_denoiser):
    x, enc, t = _inputs(b=1)
    empty = tiny_denoiser(x, enc[:, :0], t, image_grid=(3, 4)).sample
    masked = tiny_denoiser(
        x, enc, t, image_grid=(3, 4), encoder_attention_mask=torch.zeros(1, 5, dtype=torch.bool)
    ).sample
    assert empty.shape == (1, 12, 128)
    torch.testing.assert_close(empty, masked, atol=1e-5, rtol=1e-5)


def test_text_and_timestep_change_the_output(tiny_denoiser):
    x, enc, t = _inputs(b=1)
    base = tiny_denoiser(x, enc, t, image_grid=(3, 4)).sample
    assert not torch.allclose(base, tiny_denoiser(x, enc[:, :0], t, image_grid=(3, 4)).sample)
    assert not torch.allclose(base, tiny_denoiser(x, enc, 1 - t, image_grid=(3, 4)).sample)


def test_no_mask_reaches_attention_without_padding(tiny_denoiser, monkeypatch):
    seen = []
    real = block_module.attention
    monkeypatch.setattr(block_module, "attention", lambda q, k, v, m=None: seen.append(m) or real(q, k, v, m))
    x, enc, t = _inputs()
    tiny_denoiser(x, enc, t, image_grid=(3, 4), encoder_attention_mask=torch.ones(2, 5, dtype=torch.bool))
    assert seen and all(m is None for m in seen)
    seen.clear()
    tiny_denoiser(
        x, enc, t, image_grid=(3, 4), encoder_attention_mask=torch.tensor([[1, 1, 0, 0, 0], [1] * 5]).bool()
    )
    assert all(m is not None and m.dtype == torch.bool for m in seen)


@pytest.mark.parametrize("grid", [(1, 1), (2, 5), (7, 3), (4, 4)])
def test_any_grid(tiny_denoiser, grid):
    x, enc, t = _inputs(b=1, h=grid[0], w=grid[1])
    assert tiny_denoiser(x, enc, t, image_grid=grid).sample.shape == (1, grid[0] * grid[1], 128)


def _with_pos_embed(model, pos_embed):
    """The same weights under another `pos_embed`."""
    if pos_embed == model.config.pos_embed:
        return model
    other = LensTransformer2DModel(**TINY_DENOISER, pos_embed=pos_embed).eval()
    other.load_state_dict(model.state_dict())
    return other


@pytest.mark.parametrize("pos_embed", ["rope", "rope+sincos"])
def test_pack_matches_individual_samples(tiny_denoiser, pos_embed):
    model = _with_pos_embed(tiny_denoiser, pos_embed)
    grids, lens = ((3, 4), (2, 2), (1, 5)), (5, 0, 3)
    samples = [_inputs(b=1, h=h, w=w, s=s, seed=i) for i, ((h, w), s) in enumerate(zip(grids, lens))]
    singles = [model(x, e, t, image_grid=g).sample for (x, e, t), g in zip(samples, grids)]
    x = torch.cat([s[0] for s in samples], dim=1)
    enc = torch.cat([s[1] for s in samples], dim=1)
    t = torch.cat([s[2] for s in samples])
    packed = model(x, enc, t, pack=Pack(grids, lens)).sample
    torch.testing.assert_close(packed, torch.cat(singles, dim=1), atol=1e-5, rtol=1e-5)


def test_sincos_positions_in_padded_batches_match_single_samples(tiny_denoiser):
    model = _with_pos_embed(tiny_denoiser, "rope+sincos")
    x, enc, t = _inputs()
    mask = torch.tensor([[True] * 3 + [False] * 2, [True] * 5])
    out = model(x, enc, t, image_grid=(3, 4), encoder_attention_mask=mask).sample
    torch.testing.assert_close(out[:1], model(x[:1], enc[:1, :3], t[:1], image_grid=(3, 4)).sample)
    torch.testing.assert_close(out[1:], model(x[1:], enc[1:], t[1:], image_grid=(3, 4)).sample)


@pytest.mark.parametrize("grid", [(3, 4), (5, 2)])
def test_sincos_is_rope_plus_the_table_after_img_in(tiny_denoiser, grid):
    sincos = _with_pos_embed(tiny_denoiser, "rope+sincos")
    x, enc, t = _inputs(h=grid[0], w=grid[1])
    rope_out = tiny_denoiser(x, enc, t, image_grid=grid).sample
    sincos_out = sincos(x, enc, t, image_grid=grid).sample
    assert (sincos_out - rope_out).abs().max() > 0.1  # the same weights see the absolute places
    table = sincos_embedding(image_positions(*grid), tiny_denoiser.inner_dim)  # (N, D)
    assert table.shape == (grid[0] * grid[1], 32) and len(set(table.tolist()[0])) > 2
    hook = tiny_denoiser.img_in.register_forward_hook(lambda module, args, out: out + table)
    try:
        by_hand = tiny_denoiser(x, enc, t, image_grid=grid).sample
    finally:
        hook.remove()
    torch.testing.assert_close(sincos_out, by_hand, atol=1e-6, rtol=1e-6)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_denoiser):
    x, enc, t = _inputs()
    tiny_denoiser.train()
    tiny_denoiser(x, enc, t, image_grid=(3, 4)).sample.square().mean().backward()
    # the last block's text-stream outputs feed nothing (only image tokens are output): no grads there
    ref = {n: p.grad.clone() for n, p in tiny_denoiser.named_parameters() if p.grad is not None}
    assert len(ref) > 0.8 * len(list(tiny_denoiser.parameters()))
    tiny_denoiser.zero_grad()
    tiny_denoiser.enable_gradient_checkpointing()
    tiny_denoiser(x, enc, t, image_grid=(3, 4)).sample.square().mean().backward()
    for n, p in tiny_denoiser.named_parameters():
        assert (p.grad is None) == (n not in ref), n
        if p.grad is not None:
            torch.testing.assert_close(p.grad, ref[n], atol=1e-6, rtol=1e-5, msg=n)


def test_block_compiles_without_graph_breaks(tiny_denoiser):
    import torch._dynamo

    torch._dynamo.reset()
    block = tiny_denoiser.transformer_blocks[0]
    compiled = torch.compile(block, fullgraph=True, backend="eager")
    img, txt, temb = torch.randn(2, 12, 32), torch.randn(2, 5, 32), torch.randn(2, 32)
    cos, sin = rope_table(torch.cat([image_positions(3, 4), text_positions(3, 4, 5)]), (4, 6, 6))
    mask = torch.ones(2, 1, 1, 17, dtype=torch.bool)
    for m in (None, mask):
        want = block(img, txt, temb, (cos[None, None], sin[None, None]), m)
        got = compiled(img, txt, temb, (cos[None, None], sin[None, None]), m)
        torch.testing.assert_close(got[0], want[0])


def test_rope_positions_follow_the_reference():
    pos = image_positions(4, 5)
    assert pos[:, 0].eq(0).all()
    assert pos[:, 1].unique().tolist() == [-2, -1, 0, 1]
    assert pos[:, 2].unique().tolist() == [-3, -2, -1, 0, 1]
    assert pos[1].tolist() == [0, -2, -2]  # row-major: second token is the next column
    txt = text_positions(4, 5, 3)
    assert txt.tolist() == [[2, 2, 2], [3, 3, 3], [4, 4, 4]]


def test_rope_rotates_adjacent_pairs_like_complex_multiplication():
    x = torch.randn(1, 2, 6, 16)
    pos = torch.randn(6, 3) * 5
    cos, sin = rope_table(pos, (4, 6, 6))
    got = apply_rope(x, cos, sin)
    angles = []
    for axis, dim in enumerate((4, 6, 6)):
        freqs = [10000 ** (-(2 * i) / dim) for i in range(dim // 2)]
        angles += [pos[:, axis] * f for f in freqs]
    angle = torch.stack(angles, dim=-1).double()
    ref = torch.view_as_real(
        torch.view_as_complex(x.double().unflatten(-1, (-1, 2)).contiguous())
        * torch.polar(torch.ones_like(angle), angle)
    )
    torch.testing.assert_close(got, ref.flatten(-2).float(), atol=1e-5, rtol=1e-5)
    assert math.isclose(float(got.norm()), float(x.norm()), rel_tol=1e-5)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda m, x, e, t: m(x[..., :64], e, t, image_grid=(3, 4)), "hidden_states"),
        (lambda m, x, e, t: m(x, e[..., :10], t, image_grid=(3, 4)), "encoder_hidden_states"),
        (lambda m, x, e, t: m(x, e, t, image_grid=(3, 3)), "image_grid"),
        (
            lambda m, x, e, t: m(x, e, t, image_grid=(3, 4), encoder_attention_mask=torch.ones(2, 4).bool()),
            "mask",
        ),
        (lambda m, x, e, t: m(x, e, t[:1].repeat(3), image_grid=(3, 4)), "timestep"),
        (lambda m, x, e, t: m(x, e, t, pack=Pack(((3, 4),), (5,))), "packed"),
    ],
)
def test_bad_shapes_get_clear_errors(tiny_denoiser, call, words):
    x, enc, t = _inputs()
    with pytest.raises(LensError, match=words):
        call(tiny_denoiser, x, enc, t)
