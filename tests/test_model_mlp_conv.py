"""The `mlp_conv_kernel` option: a depthwise convolution in the image MLPs (Sana's Mix-FFN; not in Lens)."""

import json

import pytest
import torch

from lens.errors import LensError
from lens.model.layers import SwiGLU
from lens.model.layout import Pack
from lens.model.transformer import LensTransformer2DModel
from lens.train.presets import load_config

from .conftest import TINY_DENOISER


def _pair(seed=0):
    torch.manual_seed(seed)
    plain = LensTransformer2DModel(**TINY_DENOISER).eval()
    conv = LensTransformer2DModel(**TINY_DENOISER, mlp_conv_kernel=3).eval()
    return plain, conv


def _inputs(b, h, w, s=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, h * w, 128, generator=g),
        torch.randn(b, s, 2, 24, generator=g),
        torch.rand(b, generator=g),
    )


def _randomise_convs(model, seed=2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.transformer_blocks:
            block.img_mlp.conv.weight.copy_(torch.randn(block.img_mlp.conv.weight.shape, generator=g) * 0.3)


def test_default_is_lens_and_the_option_only_adds_image_convs():
    with torch.device("meta"):
        released = LensTransformer2DModel()
        conv = LensTransformer2DModel(mlp_conv_kernel=3)
    assert released.config.mlp_conv_kernel == 0
    assert sum(p.numel() for p in released.parameters()) == 4_104_225_152
    added = set(conv.state_dict()) - set(released.state_dict())
    assert added == {
        f"transformer_blocks.{i}.img_mlp.conv.{p}" for i in range(48) for p in ("weight", "bias")
    }
    hidden = 2 * 4096
    assert tuple(conv.state_dict()["transformer_blocks.0.img_mlp.conv.weight"].shape) == (hidden, 1, 3, 3)


def test_starts_as_the_plain_mlp():
    plain, conv = _pair()
    conv.load_state_dict(plain.state_dict(), strict=False)
    x, enc, t = _inputs(2, 3, 4)
    with torch.no_grad():
        torch.testing.assert_close(
            conv(x, enc, t, image_grid=(3, 4)).sample, plain(x, enc, t, image_grid=(3, 4)).sample
        )


def test_convolution_mixes_neighbouring_tokens_only():
    torch.manual_seed(0)
    mlp = SwiGLU(8, 16, conv_kernel=3)
    with torch.no_grad():
        mlp.conv.weight.normal_()
    x = torch.randn(1, 5 * 5, 8, requires_grad=True)
    mlp(x, ((5, 5),))[0, 12].sum().backward()  # the centre token of a 5 x 5 grid
    touched = (x.grad[0].abs().sum(-1) > 0).reshape(5, 5)
    want = torch.zeros(5, 5, dtype=torch.bool)
    want[1:4, 1:4] = True
    assert torch.equal(touched, want)


def test_pack_matches_individual_samples():
    _, model = _pair()
    _randomise_convs(model)
    grids, lengths = ((3, 4), (2, 3)), (5, 3)
    singles, xs, encs, ts = [], [], [], []
    for i, ((h, w), s) in enumerate(zip(grids, lengths)):
        x, enc, t = _inputs(1, h, w, s, seed=10 + i)
        with torch.no_grad():
            singles.append(model(x, enc, t, image_grid=(h, w)).sample)
        xs, encs, ts = [*xs, x], [*encs, enc], [*ts, t]
    with torch.no_grad():
        packed = model(torch.cat(xs, 1), torch.cat(encs, 1), torch.cat(ts), pack=Pack(grids, lengths)).sample
    torch.testing.assert_close(packed, torch.cat(singles, 1), atol=1e-5, rtol=1e-5)


def test_option_survives_save_and_load(tmp_path):
    _, model = _pair()
    _randomise_convs(model)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["mlp_conv_kernel"] == 3
    loaded = LensTransformer2DModel.from_pretrained(tmp_path).eval()
    x, enc, t = _inputs(1, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(x, enc, t, image_grid=(4, 4)).sample,
            model(x, enc, t, image_grid=(4, 4)).sample,
            atol=1e-5,
            rtol=1e-5,
        )


def test_training_config_carries_the_kernel_and_bad_kernels_are_refused():
    kwargs = load_config("debug", ["model.mlp_conv_kernel=3"]).model.model_kwargs()
    with torch.device("meta"):
        assert LensTransformer2DModel(**kwargs).config.mlp_conv_kernel == 3
    assert load_config("debug").model.model_kwargs()["mlp_conv_kernel"] == 0
    for bad in (2, -1):
        with (
            torch.device("meta"),
            pytest.raises(LensError, match="mlp_conv_kernel must be 0 .off. or an odd"),
        ):
            LensTransformer2DModel(mlp_conv_kernel=bad)
