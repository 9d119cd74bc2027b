"""Released-config compatibility: config accepted verbatim, exact key names, exact parameter count."""

import json

import pytest
import torch

from lens.errors import LensError
from lens.model.transformer import LensTransformer2DModel
from lens.train.presets import load_config

from .conftest import TINY_DENOISER

RELEASED_CONFIG = {
    "_class_name": "LensTransformer2DModel",
    "_diffusers_version": "0.36.0",
    "patch_size": 2,
    "in_channels": 128,
    "out_channels": 32,
    "num_layers": 48,
    "attention_head_dim": 64,
    "num_attention_heads": 24,
    "inner_dim": 1536,
    "enc_hidden_dim": 2880,
    "axes_dims_rope": [8, 28, 28],
    "gate_mlp": True,
    "rms_norm": True,
    "multi_layer_encoder_feature": True,
    "selected_layer_index": [5, 11, 17, 23],
}

BLOCK_KEYS = {
    "attn.img_qkv.weight": (4608, 1536),
    "attn.img_qkv.bias": (4608,),
    "attn.txt_qkv.weight": (4608, 1536),
    "attn.txt_qkv.bias": (4608,),
    "attn.norm_q.weight": (64,),
    "attn.norm_k.weight": (64,),
    "attn.norm_added_q.weight": (64,),
    "attn.norm_added_k.weight": (64,),
    "attn.to_out.0.weight": (1536, 1536),
    "attn.to_out.0.bias": (1536,),
    "attn.to_add_out.weight": (1536, 1536),
    "attn.to_add_out.bias": (1536,),
    "img_mod.1.weight": (9216, 1536),
    "img_mod.1.bias": (9216,),
    "txt_mod.1.weight": (9216, 1536),
    "txt_mod.1.bias": (9216,),
    "img_norm1.weight": (1536,),
    "img_norm2.weight": (1536,),
    "txt_norm1.weight": (1536,),
    "txt_norm2.weight": (1536,),
    **{f"{s}_mlp.w1.weight": (4096, 1536) for s in ("img", "txt")},
    **{f"{s}_mlp.w3.weight": (4096, 1536) for s in ("img", "txt")},
    **{f"{s}_mlp.w2.weight": (1536, 4096) for s in ("img", "txt")},
}
TOP_KEYS = {
    "time_text_embed.timestep_embedder.linear_1.weight": (1536, 256),
    "time_text_embed.timestep_embedder.linear_1.bias": (1536,),
    "time_text_embed.timestep_embedder.linear_2.weight": (1536, 1536),
    "time_text_embed.timestep_embedder.linear_2.bias": (1536,),
    **{f"txt_norm.{i}.weight": (2880,) for i in range(4)},
    "txt_in.weight": (1536, 11520),
    "txt_in.bias": (1536,),
    "img_in.weight": (1536, 128),
    "img_in.bias": (1536,),
    "norm_out.linear.weight": (3072, 1536),
    "norm_out.linear.bias": (3072,),
    "proj_out.weight": (128, 1536),
    "proj_out.bias": (128,),
}


def released_shapes():
    expected = dict(TOP_KEYS)
    for i in range(48):
        expected.update({f"transformer_blocks.{i}.{k}": v for k, v in BLOCK_KEYS.items()})
    return expected


def test_released_config_verbatim_keys_and_parameter_count(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(RELEASED_CONFIG))
    config = LensTransformer2DModel.load_config(tmp_path)
    with torch.device("meta"):
        model = LensTransformer2DModel.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == 4_104_225_152
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == released_shapes()
    assert model.config.pos_embed == "rope"  # the released config predates the option: rotary only


def test_default_config_is_the_released_model():
    with torch.device("meta"):
        model = LensTransformer2DModel()
    assert sum(p.numel() for p in model.parameters()) == 4_104_225_152
    assert model.config.selected_layer_index == (5, 11, 17, 23)
    assert model.config.pos_embed == "rope"


def test_sincos_positions_add_no_parameters_or_state():
    with torch.device("meta"):
        rope = LensTransformer2DModel()
        sincos = LensTransformer2DModel(pos_embed="rope+sincos")
    assert sum(p.numel() for p in sincos.parameters()) == 4_104_225_152
    shapes = {k: tuple(v.shape) for k, v in sincos.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in rope.state_dict().items()} == released_shapes()
    assert [n for n, _ in sincos.named_buffers()] == [n for n, _ in rope.named_buffers()]


def test_sincos_option_survives_save_and_load(tmp_path):
    torch.manual_seed(0)
    model = LensTransformer2DModel(**TINY_DENOISER, pos_embed="rope+sincos").eval()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["pos_embed"] == "rope+sincos"
    loaded = LensTransformer2DModel.from_pretrained(tmp_path).eval()
    assert loaded.config.pos_embed == "rope+sincos"
    g = torch.Generator().manual_seed(1)
    x, enc, t = torch.randn(1, 12, 128, generator=g), torch.randn(1, 5, 2, 24, generator=g), torch.rand(1)
    with torch.no_grad():
        want = model(x, enc, t, image_grid=(3, 4)).sample
        got = loaded(x, enc, t, image_grid=(3, 4)).sample
    # equal weights, but bit-equality is not promised: CPU kernels may sum in another order for the
    # loaded (memory-mapped) tensors; without the sincos table the outputs would differ by ~1
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_training_config_carries_pos_embed_and_refuses_unknown_ones():
    kwargs = load_config("debug", ["model.pos_embed=rope+sincos"]).model.model_kwargs()
    with torch.device("meta"):
        assert LensTransformer2DModel(**kwargs).config.pos_embed == "rope+sincos"
    assert load_config("debug").model.model_kwargs()["pos_embed"] == "rope"
    with pytest.raises(LensError, match=r"model.pos_embed must be one of rope, rope\+sincos, got 'bogus'"):
        load_config("debug", ["model.pos_embed=bogus"])


def test_sizes_are_configurable():
    with torch.device("meta"):
        small = LensTransformer2DModel(
            num_layers=3,
            num_attention_heads=4,
            attention_head_dim=32,
            axes_dims_rope=(8, 12, 12),
            enc_hidden_dim=64,
            selected_layer_index=(1, 2, 3),
        )
    keys = small.state_dict()
    assert keys["txt_in.weight"].shape == (128, 3 * 64)
    assert keys["transformer_blocks.2.img_mlp.w1.weight"].shape == (int(128 / 3 * 8), 128)
    assert "transformer_blocks.3.img_mod.1.weight" not in keys


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"inner_dim": 1000}, "inner_dim"),
        ({"axes_dims_rope": [8, 28, 20]}, "axes_dims_rope"),
        ({"gate_mlp": False}, "gate_mlp"),
        ({"selected_layer_index": []}, "selected_layer_index"),
        ({"pos_embed": "sincos"}, r"pos_embed must be one of rope, rope\+sincos, got 'sincos'"),
        (
            {
                "pos_embed": "rope+sincos",
                "num_attention_heads": 3,
                "attention_head_dim": 18,
                "axes_dims_rope": [6, 6, 6],
            },
            "divisible by 4",
        ),
    ],
)
def test_bad_configs_are_refused(bad, words):
    with torch.device("meta"), pytest.raises(LensError, match=words):
        LensTransformer2DModel(**bad)
