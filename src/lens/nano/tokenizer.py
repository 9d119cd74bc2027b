"""The nano tokenizer: a byte-level BPE trained on the world's captions, with GPT-OSS's Harmony specials.

Layout mirrors `o200k_harmony` at small scale: BPE ids first (256 byte tokens, then merges), then the
21 Harmony special ids in GPT-OSS's order (`<|startoftext|>`, `<|endoftext|>`, two reserved,
`<|return|>`, `<|constrain|>`, reserved, `<|channel|>`, `<|start|>`, `<|end|>`, `<|message|>`, ...,
`<|endofprompt|>`), gaps named `<|reserved_{id}|>`. bos / eos / pad are `<|startoftext|>` /
`<|return|>` / `<|endoftext|>` as in the real tokenizer, so `HarmonyTemplate`, its prefix derivation and
`encode_prompts` run unchanged.

Pre-tokenisation is o200k's regex, except that every digit is its own pre-token: the Harmony prefix
holds today's date, and single-digit tokens make its length the same on every day (the trained
merges would otherwise cover some digit groups and not others).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from lens.errors import LensError
from lens.text.tokenizer import HARMONY_TOKENIZER_KWARGS, o200k_pattern

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

DEFAULT_VOCAB = 1536  # BPE ids (bytes + merges); the specials come on top
MIN_VOCAB = 257  # the 256 byte tokens and at least one merge
MODEL_MAX_LENGTH = 4096
# Offsets of GPT-OSS's named specials from its first special id (199998); others are reserved.
HARMONY_SPECIALS = {
    0: "<|startoftext|>",
    1: "<|endoftext|>",
    4: "<|return|>",
    5: "<|constrain|>",
    7: "<|channel|>",
    8: "<|start|>",
    9: "<|end|>",
    10: "<|message|>",
    14: "<|call|>",
    20: "<|endofprompt|>",
}


def special_names(first_id: int) -> list[str]:
    """The 21 special-token names for ids first_id .. first_id + 20, gaps named by their id."""
    top = max(HARMONY_SPECIALS)
    return [HARMONY_SPECIALS.get(k, f"<|reserved_{first_id + k}|>") for k in range(top + 1)]


def train_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB) -> PreTrainedTokenizerFast:
    """A byte-level BPE with up to `vocab_size` BPE ids learnt from `texts`, plus the Harmony specials.

    The trainer stops early when no pair occurs twice, so small corpora give fewer ids. Deterministic:
    the same texts give the same tokenizer.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB:
        raise LensError(f"vocab_size must be an int >= {MIN_VOCAB} (256 bytes + merges), got {vocab_size!r}.")
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise LensError("train_tokenizer needs a non-empty list of strings.")
    tok = Tokenizer(BPE(fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(o200k_pattern()), behavior="isolated", invert=False),
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(texts, trainer=trainer)
    first = tok.get_vocab_size()
    names = special_names(first)
    tok.add_special_tokens([AddedToken(n, normalized=False, special=True) for n in names])
    for i, name in enumerate(names, start=first):
        if tok.token_to_id(name) != i:
            raise LensError(f"special token {name} got id {tok.token_to_id(name)}, expected {i}.")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, **HARMONY_TOKENIZER_KWARGS, model_max_length=MODEL_MAX_LENGTH
    )
