"""Tiny random LMs and compact tokenizers for tests and tiny pipelines (CPU, offline, seconds).

Tokenizer choice for tiny pipelines: `tiny_harmony_tokenizer()`, the first 4,096 o200k BPE ranks plus
the harmony special tokens up to `<|endofprompt|>` (4,117 ids). The first N o200k ranks are closed
under merging, so it is a valid byte-level BPE that tokenises any text; it carries `<|start|>`,
`<|message|>`, `<|return|>`... by name, so `HarmonyTemplate` and the prefix derivation run unchanged
(the prefix is 144 tokens instead of 97). Sizes, measured: its tokenizer.json is ~0.36 MB and a
32-wide tied embedding 0.5 MB, versus 28 MB for the real tokenizer.json and 25.7 MB (fp32) per
201,088 x 32 embedding (twice that untied). The real tokenizer is `lens.text.tokenizer.harmony_tokenizer()`.
"""

from __future__ import annotations

import torch

from lens.text.chat import ChatTemplate
from lens.text.tokenizer import fast_tokenizer_from_ranks, harmony_tokenizer, o200k_pattern, o200k_ranks

COMPACT_BPE_TOKENS = 4096
CHATML_BPE_TOKENS = 1024

# A Qwen-style ChatML template that renders assistant reasoning as <think>...</think>.
CHATML_TEMPLATE = (
    "{%- for m in messages %}"
    "{{- '<|im_start|>' + m.role + '\\n' }}"
    "{%- if m.role == 'assistant' and m.reasoning_content %}"
    "{{- '<think>\\n' + m.reasoning_content + '\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{{- m.content + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def tiny_harmony_tokenizer():
    """Compact GPT-OSS-style tokenizer (4,117 ids; bos/eos/pad as the real one). Fresh copy per call."""
    return harmony_tokenizer(COMPACT_BPE_TOKENS)


def tiny_chatml_tokenizer():
    """Compact byte-level BPE with ChatML specials and a chat template, for generic (Qwen3-like) LMs."""
    ranks = {tok: r for tok, r in o200k_ranks().items() if r < CHATML_BPE_TOKENS}
    specials = {"<|endoftext|>": CHATML_BPE_TOKENS, "<|im_start|>": CHATML_BPE_TOKENS + 1}
    specials["<|im_end|>"] = CHATML_BPE_TOKENS + 2
    return fast_tokenizer_from_ranks(
        ranks,
        o200k_pattern(),
        specials,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="right",
        chat_template=CHATML_TEMPLATE,
    )


def _small_lm(num_layers: int, hidden_size: int, vocab_size: int) -> dict:
    """Config fields shared by the tiny LMs: 4 heads of 8 (2 KV heads), tied embeddings."""
    return {
        "num_hidden_layers": num_layers,
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "head_dim": 8,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": vocab_size,
        "tie_word_embeddings": True,
        "max_position_embeddings": 4096,
    }


def tiny_gpt_oss(num_layers: int = 4, hidden_size: int = 32, vocab_size: int | None = None, seed: int = 0):
    """A random `LensGptOssEncoder`: 4 experts (2 active), alternating sliding (window 8) / full
    attention, eager attention, tied embeddings, eval mode. vocab_size defaults to the compact
    tokenizer's 4,117; pass 201,088 for the real tokenizer."""
    from transformers import GptOssConfig

    from lens.text.encoder import LensGptOssEncoder

    tok = tiny_harmony_tokenizer() if vocab_size is None else None
    config = GptOssConfig(
        **_small_lm(num_layers, hidden_size, len(tok) if tok is not None else vocab_size),
        num_local_experts=4,
        num_experts_per_tok=2,
        sliding_window=8,
        bos_token_id=tok.bos_token_id if tok is not None else None,
        eos_token_id=tok.eos_token_id if tok is not None else None,
        pad_token_id=tok.pad_token_id if tok is not None else None,
    )
    config._attn_implementation = "eager"  # GPT-OSS attention sinks need eager off-GPU
    torch.manual_seed(seed)
    return LensGptOssEncoder(config).eval()


def tiny_qwen3(num_layers: int = 4, hidden_size: int = 32, vocab_size: int | None = None, seed: int = 0):
    """A random `Qwen3ForCausalLM` matching `tiny_chatml_tokenizer()` (vocab 1,027 by default)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**_small_lm(num_layers, hidden_size, vocab_size or CHATML_BPE_TOKENS + 3))
    torch.manual_seed(seed)
    return Qwen3ForCausalLM(config).eval()


class PrefixTemplate(ChatTemplate):
    """`prefix + prompt`: a bare template for probing prefix-boundary handling."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def render(self, prompt: str, *, allow_empty: bool = False) -> str:
        return self.prefix + prompt
