"""The FLUX.2 latent contract: patch order, round trips, BatchNorm normalisation, encode/decode."""

import pytest
import torch

from lens.errors import LensError
from lens.latents import (
    LatentCodec,
    from_tokens,
    patchify,
    tiny_flux2_vae,
    to_tokens,
    unpatchify,
)


@pytest.fixture(scope="module")
def vae():
    return tiny_flux2_vae(seed=0)


@pytest.fixture(scope="module")
def codec(vae):
    return LatentCodec(vae)


def test_patchify_channel_order_is_c_prow_pcol():
    b, c, h, w = 2, 3, 4, 6
    z = torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w)
    p = patchify(z)
    assert p.shape == (b, c * 4, h // 2, w // 2)
    for ci in range(c):
        for pr in range(2):
            for pc in range(2):
                for i in range(h // 2):
                    for j in range(w // 2):
                        assert p[1, ci * 4 + pr * 2 + pc, i, j] == z[1, ci, 2 * i + pr, 2 * j + pc]


def test_patchify_round_trip_and_shapes():
    z = torch.randn(2, 32, 6, 10)
    p = patchify(z)
    assert p.shape == (2, 128, 3, 5)
    assert torch.equal(unpatchify(p), z)


def test_tokens_are_row_major_and_round_trip():
    z = torch.randn(2, 128, 3, 5)
    t = to_tokens(z)
    assert t.shape == (2, 15, 128)
    # token k is grid cell (k // w, k % w)
    assert torch.equal(t[1, 7], z[1, :, 1, 2])
    assert torch.equal(from_tokens(t, 3, 5), z)


def test_bad_shapes_raise():
    with pytest.raises(LensError, match="even"):
        patchify(torch.zeros(1, 32, 3, 4))
    with pytest.raises(LensError, match="tokens"):
        from_tokens(torch.zeros(1, 15, 128), 4, 4)


def test_tiny_vae_has_nontrivial_stats_and_is_seeded(vae):
    assert vae.config.latent_channels == 32
    assert vae.bn.num_features == 128
    assert vae.bn.running_mean.abs().max() > 0.1
    assert (vae.bn.running_var - 1).abs().max() > 0.5
    other = tiny_flux2_vae(seed=0)
    assert torch.equal(other.bn.running_mean, vae.bn.running_mean)
    assert torch.equal(other.encoder.conv_in.weight, vae.encoder.conv_in.weight)
    assert not torch.equal(tiny_flux2_vae(seed=1).bn.running_mean, vae.bn.running_mean)


def test_normalize_matches_hand_formula_and_round_trips(codec, vae):
    z = torch.randn(2, 128, 3, 4) * 2 + 1
    mean = vae.bn.running_mean.view(1, 128, 1, 1)
    var = vae.bn.running_var.view(1, 128, 1, 1)
    expected = (z - mean) / torch.sqrt(var + vae.config.batch_norm_eps)
    out = codec.normalize(z)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(codec.denormalize(out), z, rtol=1e-5, atol=1e-5)
    # dtype follows the input
    assert codec.normalize(z.bfloat16()).dtype == torch.bfloat16


def test_encode_uses_mode_patchify_and_normalize(codec, vae):
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        a = codec.encode(x)
        b = codec.encode(x)
        mode = vae.encode(x).latent_dist.mode()  # (B, 32, 4, 6)
    assert a.shape == (2, 128, 2, 3)
    assert torch.equal(a, b)  # deterministic: the mode, not a sample
    torch.testing.assert_close(a, codec.normalize(patchify(mode)))


def test_decode_inverts_normalization_before_vae(codec, vae):
    z32 = torch.randn(1, 32, 4, 6)
    latents = codec.normalize(patchify(z32))
    with torch.no_grad():
        out = codec.decode(latents)
        ref = vae.decode(z32).sample
    assert out.shape == (1, 3, 32, 48)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_codec_casts_input_to_vae_dtype():
    codec64 = LatentCodec(tiny_flux2_vae(seed=0).double())
    with torch.no_grad():
        z = codec64.encode(torch.zeros(1, 3, 16, 16))  # float32 in, float64 VAE
        img = codec64.decode(z.float())
    assert z.dtype == torch.float64 and z.shape == (1, 128, 1, 1)
    assert img.dtype == torch.float64 and img.shape == (1, 3, 16, 16)


def test_codec_rejects_bad_input(codec):
    with pytest.raises(LensError, match="multiple of 16"):
        codec.encode(torch.zeros(1, 3, 24, 32))
    with pytest.raises(LensError, match="3 channels"):
        codec.encode(torch.zeros(1, 4, 16, 16))
    with pytest.raises(LensError, match="128 channels"):
        codec.decode(torch.zeros(1, 32, 2, 2))


def test_codec_rejects_non_flux2_layout():
    with pytest.raises(LensError, match="downsampl"):
        LatentCodec(
            tiny_flux2_vae(
                block_out_channels=(8, 16, 16),
                down_block_types=("DownEncoderBlock2D",) * 3,
                up_block_types=("UpDecoderBlock2D",) * 3,
            )
        )
