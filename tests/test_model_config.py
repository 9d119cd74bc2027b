"""Released-config compatibility: config accepted verbatim, exact key names, exact parameter count."""

import json

import pytest
import torch

from lens.errors import LensError
from lens.model.transformer import LensTransformer2DModel

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


def test_default_config_is_the_released_model():
    with torch.device("meta"):
        model = LensTransformer2DModel()
    assert sum(p.numel() for p in model.parameters()) == 4_104_225_152
    assert model.config.selected_layer_index == (5, 11, 17, 23)


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
    ],
)
def test_bad_configs_are_refused(bad, words):
    with torch.device("meta"), pytest.raises(LensError, match=words):
        LensTransformer2DModel(**bad)
