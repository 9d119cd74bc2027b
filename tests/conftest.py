import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

TINY_DENOISER = dict(
    num_layers=2,
    num_attention_heads=2,
    attention_head_dim=16,
    axes_dims_rope=(4, 6, 6),
    enc_hidden_dim=24,
    selected_layer_index=(0, 1),
)


@pytest.fixture
def tiny_denoiser():
    from lens.model.transformer import LensTransformer2DModel

    torch.manual_seed(0)
    return LensTransformer2DModel(**TINY_DENOISER).eval()
