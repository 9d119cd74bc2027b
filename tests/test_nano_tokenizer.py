"""Nano tokenizer: trained byte-level BPE with the Harmony specials, so the Lens text path runs unchanged."""

from __future__ import annotations

import pytest

from lens.errors import LensError
from lens.nano.corpus import captions, tokenizer_corpus
from lens.nano.tokenizer import special_names, train_tokenizer
from lens.text.chat import HarmonyTemplate, token_ids


@pytest.fixture(scope="module")
def corpus():
    return tokenizer_corpus(0, 48)


@pytest.fixture(scope="module")
def tok(corpus):
    return train_tokenizer(corpus, 800)


def test_round_trip_on_captions_and_any_text(tok):
    texts = captions(0, 1000, 6) + ["Ünïcode ☃ and emoji 🙂, tabs\tand\nnewlines 12345"]
    for text in texts:
        assert tok.decode(token_ids(tok, text)) == text


def test_world_words_are_single_tokens(tok):
    for word in (" circle", " triangle", " red", " background"):
        assert len(token_ids(tok, word)) == 1, word


def test_harmony_specials_sit_after_the_bpe_ids_in_gpt_oss_order(tok):
    first = tok.convert_tokens_to_ids("<|startoftext|>")
    assert 600 <= first <= 800 and len(tok) == first + 21
    expected = {"<|endoftext|>": 1, "<|return|>": 4, "<|channel|>": 7, "<|start|>": 8, "<|end|>": 9}
    expected |= {"<|message|>": 10, "<|call|>": 14, "<|endofprompt|>": 20}
    for name, offset in expected.items():
        assert tok.convert_tokens_to_ids(name) == first + offset
        assert token_ids(tok, f"a{name}b")[1] == first + offset  # matched whole, never split
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|startoftext|>", "<|return|>", "<|endoftext|>")
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (first, first + 4, first + 1)
    assert special_names(first)[2] == f"<|reserved_{first + 2}|>"


def test_harmony_prefix_is_derived_and_date_independent(tok):
    lengths = {HarmonyTemplate(d).prefix_length(tok) for d in ("2024-01-01", "2026-05-21", "2035-12-31")}
    assert len(lengths) == 1
    prefix = HarmonyTemplate("2026-05-21").prefix_ids(tok)
    assert prefix[-1] == tok.convert_tokens_to_ids("<|message|>")
    assert prefix[0] == tok.convert_tokens_to_ids("<|start|>")


def test_training_is_deterministic(corpus, tok):
    assert train_tokenizer(corpus, 800).get_vocab() == tok.get_vocab()


@pytest.mark.parametrize("bad", [100, 256, "1k", True])
def test_bad_vocab_size_is_a_lens_error(corpus, bad):
    with pytest.raises(LensError, match="vocab_size"):
        train_tokenizer(corpus, bad)


def test_empty_corpus_is_a_lens_error():
    with pytest.raises(LensError, match="non-empty"):
        train_tokenizer([], 400)
