import os

import pytest
import torch

from lens.testing import tiny_denoiser_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


TINY_DENOISER = tiny_denoiser_config(enc_hidden_dim=24)


@pytest.fixture
def tiny_denoiser():
    from lens.model.transformer import LensTransformer2DModel

    torch.manual_seed(0)
    return LensTransformer2DModel(**TINY_DENOISER).eval()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small nano models train faster (and deterministically) on one thread; restored afterwards."""
    from lens.nano.loop import torch_threads

    with torch_threads(1):
        yield
