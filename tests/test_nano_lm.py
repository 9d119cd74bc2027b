"""Nano LM: a small GPT-OSS pre-trained on Harmony-wrapped captions, read by encode_prompts unchanged."""

from __future__ import annotations

import pytest
import torch

from lens.errors import LensError
from lens.nano.corpus import lm_text, tokenizer_corpus
from lens.nano.lm import IGNORE, LMSpec, held_out_loss, lm_batch, nano_lm, train_lm
from lens.nano.tokenizer import train_tokenizer
from lens.text.chat import HarmonyTemplate
from lens.text.encoder import LensGptOssEncoder, encode_prompts

SPEC = LMSpec(layers=2, hidden=32, heads=2, kv_heads=1, expert_hidden=32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(tokenizer_corpus(0, 48), 800)


@pytest.fixture(scope="module")
def trained(tok):
    lm = nano_lm(tok, SPEC, seed=0)
    before = held_out_loss(lm, tok, seed=0, n=16)
    log = train_lm(lm, tok, seed=0, steps=10, batch_size=4, lr=1e-2)
    return lm, before, held_out_loss(lm, tok, seed=0, n=16), log


def test_is_gpt_oss_sized_for_the_tokenizer(tok):
    lm = nano_lm(tok, SPEC, seed=0)
    assert isinstance(lm, LensGptOssEncoder) and lm.config.model_type == "gpt_oss"
    assert lm.config.vocab_size == len(tok) and lm.config.num_local_experts == 4
    assert lm.config.layer_types == ["sliding_attention", "full_attention"]
    assert lm.config.pad_token_id == tok.pad_token_id
    same = nano_lm(tok, SPEC, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(lm.state_dict().values(), same.state_dict().values()))


def test_batch_masks_prefix_and_padding(tok):
    prefix = HarmonyTemplate("2026-01-01").prefix_length(tok)
    texts = [lm_text(0, i) for i in range(3)]
    ids, mask, labels = lm_batch(tok, texts, prefix, 512)
    assert ids.shape == mask.shape == labels.shape
    assert (labels[:, :prefix] == IGNORE).all()
    assert (labels[mask == 0] == IGNORE).all()
    assert torch.equal(labels[:, prefix:][mask[:, prefix:] == 1], ids[:, prefix:][mask[:, prefix:] == 1])
    assert (ids[mask == 0] == tok.pad_token_id).all()


def test_training_lowers_held_out_loss_and_freezes(trained):
    lm, before, after, log = trained
    assert after < before - 0.5, (before, after)
    assert log.steps == 10 and log.curve[-1][0] == 10 and not log.stopped_by_deadline
    assert not lm.training and not any(p.requires_grad for p in lm.parameters())


def test_encode_prompts_runs_on_the_trained_parts(tok, trained):
    lm = trained[0]
    prompts = ["a photo of a red circle", "two blue squares"]
    feats, mask = encode_prompts(lm, tok, prompts, layers=(0, 1))
    assert feats.shape[0] == 2 and feats.shape[2:] == (2, SPEC.hidden)
    assert mask.sum(1).tolist()[0] > mask.sum(1).tolist()[1] - 2  # both prompts kept after the prefix
    assert torch.isfinite(feats).all() and feats[mask].abs().sum() > 0


def test_bad_spec_is_a_lens_error(tok):
    with pytest.raises(LensError, match="heads"):
        nano_lm(tok, LMSpec(hidden=48, heads=4, head_dim=16))
