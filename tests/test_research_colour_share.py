"""Text-feature contrast: the colour-word share and whitening folded into txt_in."""

from __future__ import annotations

import pytest
import torch

from lens.errors import LensError
from lens.model.transformer import LensTransformer2DModel
from lens.research.colour_share import colour_variants, colour_word_share
from lens.research.probes import probe_scenes
from lens.train.denoiser import fold_whitening
from lens.world.vocab import CHROMATIC

PROBES = probe_scenes(6)


def word_encoder(common: float, dim: int = 32):
    """A stand-in LM: each word's feature is a fixed random vector plus `common` times a shared one,
    in two identical 'layers'; captions are right-padded."""
    gen = torch.Generator().manual_seed(0)
    table: dict[str, torch.Tensor] = {}
    shared = torch.randn(dim, generator=gen)

    def vector(word):
        if word not in table:
            table[word] = torch.randn(dim, generator=gen)
        return table[word] + common * shared

    def encode(captions):
        words = [c.split() for c in captions]
        n = max(len(w) for w in words)
        feats = torch.zeros(len(captions), n, 2, dim)
        mask = torch.zeros(len(captions), n, dtype=torch.bool)
        for i, ws in enumerate(words):
            for j, w in enumerate(ws):
                feats[i, j] = vector(w)
                mask[i, j] = True
        return feats, mask

    return encode


def flat(feats):
    return feats.flatten(2)  # (B, S, L*D): an identity "txt_in"


def test_variants_differ_only_in_the_first_objects_colour():
    for probe in PROBES:
        variants = colour_variants(probe)
        assert len(variants) == len(CHROMATIC) and len(set(variants)) == len(CHROMATIC)
        words = [v.split() for v in variants]
        first = next(k for k in range(len(words[0])) if len({w[k] for w in words}) > 1)
        assert {w[first] for w in words} == set(CHROMATIC)  # the first difference is the colour word
        assert len({tuple(w[:first]) for w in words}) == 1


def test_share_is_high_for_word_features_and_falls_with_a_common_part():
    clean = colour_word_share(word_encoder(0.0), flat, PROBES)
    muddy = colour_word_share(word_encoder(6.0), flat, PROBES)
    assert clean["n"] == len(PROBES) == muddy["n"]
    # independent random word vectors: the colour token is all colour, (C-1)/C of it varies
    assert 0.75 < clean["share"] <= 1.0
    # a shared part 6x a word's norm leaves ~1/37 of the energy to the colour word
    assert muddy["share"] < 0.06 < clean["share"] / 10


def test_share_refuses_captions_without_a_comparable_colour_token():
    def constant(captions):  # every variant encodes the same: nothing to compare
        return torch.ones(len(captions), 4, 2, 8), torch.ones(len(captions), 4, dtype=torch.bool)

    with pytest.raises(LensError, match="colour word"):
        colour_word_share(constant, flat, PROBES)


def tiny_model(dim=8, layers=2):
    torch.manual_seed(0)
    return LensTransformer2DModel(
        num_layers=1, num_attention_heads=1, attention_head_dim=16, axes_dims_rope=(4, 6, 6),
        enc_hidden_dim=dim, selected_layer_index=tuple(range(layers)),
    )  # fmt: skip


def test_folded_whitening_centres_and_whitens_each_layer():
    model = tiny_model()
    with torch.no_grad():
        model.txt_in.weight.copy_(torch.eye(16))
        model.txt_in.bias.zero_()
    gen = torch.Generator().manual_seed(1)
    mix = torch.randn(8, 8, generator=gen)
    offset = 3 * torch.randn(8, generator=gen)
    feats = [
        (torch.randn(40, 2, 8, generator=gen) @ mix + offset) for _ in range(25)
    ]  # correlated, off-centre
    assert fold_whitening(model, feats, eps=1e-6)["tokens"] == 1000
    with torch.no_grad():
        out = model.embed_text(torch.cat(feats)[None])[0]  # (T, 16)
    assert out.mean(0).abs().max() < 1e-4
    cov = torch.cov(out.T)
    for block in (cov[:8, :8], cov[8:, 8:]):
        torch.testing.assert_close(block, torch.eye(8), atol=2e-3, rtol=0)


def test_whitening_keeps_the_state_dict_and_raises_the_share():
    model = tiny_model(dim=32)
    keys = {k: v.shape for k, v in model.state_dict().items()}
    encode = word_encoder(6.0)
    before = colour_word_share(encode, model.embed_text, PROBES)["share"]
    captions = [c for p in probe_scenes(40) for c in colour_variants(p)[:2]]
    feats, mask = encode(captions)
    fold_whitening(model, [f[m] for f, m in zip(feats, mask)])
    after = colour_word_share(encode, model.embed_text, PROBES)["share"]
    assert {k: v.shape for k, v in model.state_dict().items()} == keys
    assert before < 0.1 and after > 3 * before


def test_whitening_needs_enough_tokens():
    with pytest.raises(LensError, match="caption tokens"):
        fold_whitening(tiny_model(), [torch.randn(5, 2, 8)])
