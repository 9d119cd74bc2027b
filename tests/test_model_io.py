"""Saving and loading the denoiser: diffusers layout, single-file repack, mismatches, pickle refusal."""

import json

import pytest
import torch
from safetensors.torch import save_file

from lens.errors import LensError
from lens.model.transformer import LensTransformer2DModel

from .conftest import TINY_DENOISER


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)


def test_save_pretrained_round_trip(tiny_denoiser, tmp_path):
    tiny_denoiser.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["_class_name"] == "LensTransformer2DModel" and config["num_layers"] == 2
    loaded = LensTransformer2DModel.from_pretrained(tmp_path)
    _same_weights(tiny_denoiser, loaded)


def test_single_file_repack_loads_with_dtype(tiny_denoiser, tmp_path):
    bf16 = {k: v.to(torch.bfloat16).contiguous() for k, v in tiny_denoiser.state_dict().items()}
    save_file(bf16, tmp_path / "lens_bf16.safetensors")
    model = LensTransformer2DModel.from_single_file(
        tmp_path / "lens_bf16.safetensors", config=TINY_DENOISER, torch_dtype=torch.bfloat16
    )
    assert model.dtype == torch.bfloat16
    for k, v in model.state_dict().items():
        assert torch.equal(v, bf16[k]), k


def test_mismatched_checkpoint_names_the_offending_keys(tiny_denoiser, tmp_path):
    state = dict(tiny_denoiser.state_dict())
    state.pop("proj_out.bias")
    state["txt_in.weight"] = torch.zeros(32, 99)
    state["extra.weight"] = torch.zeros(1)
    save_file(state, tmp_path / "bad.safetensors")
    with pytest.raises(LensError) as err:
        LensTransformer2DModel.from_single_file(tmp_path / "bad.safetensors", config=TINY_DENOISER)
    msg = str(err.value)
    assert "proj_out.bias" in msg and "txt_in.weight" in msg and "extra.weight" in msg and "config" in msg


def test_from_pretrained_checks_shapes_against_config(tiny_denoiser, tmp_path):
    tiny_denoiser.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["enc_hidden_dim"] = 48  # weights were trained with 24
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(LensError, match="txt_in.weight"):
        LensTransformer2DModel.from_pretrained(tmp_path)


def test_pickle_checkpoints_are_refused_unless_allowed(tiny_denoiser, tmp_path):
    tiny_denoiser.save_config(tmp_path)
    torch.save(tiny_denoiser.state_dict(), tmp_path / "diffusion_pytorch_model.bin")
    with pytest.raises(LensError, match="pickle"):
        LensTransformer2DModel.from_pretrained(tmp_path)
    with pytest.raises(LensError, match="pickle"):
        LensTransformer2DModel.from_single_file(
            tmp_path / "diffusion_pytorch_model.bin", config=TINY_DENOISER
        )
    loaded = LensTransformer2DModel.from_pretrained(tmp_path, allow_pickle=True)
    _same_weights(tiny_denoiser, loaded)
