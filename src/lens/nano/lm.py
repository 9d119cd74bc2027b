"""The nano text encoder: GPT-OSS's architecture (`LensGptOssEncoder`) at 4 layers x 64 wide, pre-trained
as a causal LM on Harmony-wrapped world captions, then frozen.

Same block as GPT-OSS-20B: grouped-query attention with sinks, alternating sliding-window / full
layers, a top-k routed MoE of SwiGLU experts, YaRN RoPE, untied embeddings; only the sizes shrink
(4 experts, 2 active, window 64). Each training sequence is `HarmonyTemplate(random date).render(
caption)`, tokenised exactly as `encode_prompts` does; the loss covers the caption and the assistant
suffix (the positions whose residual streams the denoiser reads), not the boilerplate prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lens.errors import LensError
from lens.nano.corpus import VAL_START, lm_text
from lens.nano.loop import TrainLog, train
from lens.text.chat import HarmonyTemplate, token_ids
from lens.text.encoder import LensGptOssEncoder

IGNORE = -100  # label of positions without loss
MAX_TOKENS = 512  # training sequences are cut here, like encode_prompts' default max_length


@dataclass(frozen=True)
class LMSpec:
    layers: int = 4
    hidden: int = 64
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 16
    experts: int = 4
    active_experts: int = 2
    expert_hidden: int = 128
    sliding_window: int = 64
    # Token embeddings start at this std (the Hugging Face default is 0.02). Large embeddings keep each
    # word's identity in the residual stream the denoiser reads: with 0.02 the blocks' outputs swamp it
    # and a colour word decides ~4 % of its token's features (docs/nano-experiments.md, sixth session).
    embedding_std: float = 1.0


def nano_lm(tokenizer, spec: LMSpec = LMSpec(), seed: int = 0) -> LensGptOssEncoder:
    """A freshly initialised `LensGptOssEncoder` sized by `spec` for `tokenizer`'s vocabulary (eval mode)."""
    from transformers import GptOssConfig

    if spec.hidden != spec.heads * spec.head_dim or spec.heads % spec.kv_heads:
        raise LensError(
            f"LMSpec needs hidden = heads x head_dim and heads divisible by kv_heads; got {spec}."
        )
    config = GptOssConfig(
        num_hidden_layers=spec.layers,
        hidden_size=spec.hidden,
        intermediate_size=spec.expert_hidden,
        head_dim=spec.head_dim,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        num_local_experts=spec.experts,
        num_experts_per_tok=spec.active_experts,
        sliding_window=spec.sliding_window,
        layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(spec.layers)],
        vocab_size=len(tokenizer),
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config._attn_implementation = "eager"  # GPT-OSS attention sinks need eager off-GPU
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lm = LensGptOssEncoder(config)
        torch.nn.init.normal_(lm.model.embed_tokens.weight, std=spec.embedding_std)
    return lm.eval()


@torch.no_grad()
def word_lookup(lm: LensGptOssEncoder, seed: int = 0, std: float = 1.0) -> LensGptOssEncoder:
    """Turn `lm` into a context-free word lookup, in place: token embeddings N(0, std^2) and every
    block's attention and expert outputs zeroed, so each layer's residual stream is the token's own
    embedding. Same class and files as the LM, so the pipeline and `lens prepare` run unchanged.

    Why: a trained LM's features share a large common component, and a colour word decides only a
    few per cent of its token's features (the colour-word share); with a lookup it decides ~86 %, the
    strongest caption binding measured on the nano (docs/nano-experiments.md, sixth session). The
    denoiser still sees word order through the text positions, not through context mixing.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.nn.init.normal_(lm.model.embed_tokens.weight, std=std)
    for layer in lm.model.layers:
        attn, experts = layer.self_attn.o_proj, layer.mlp.experts
        attn.weight.zero_()
        if attn.bias is not None:
            attn.bias.zero_()
        experts.down_proj.zero_()
        experts.down_proj_bias.zero_()
    return lm.eval()


def lm_batch(tokenizer, texts: list[str], prefix: int, max_tokens: int) -> tuple[Tensor, Tensor, Tensor]:
    """(input_ids, attention_mask, labels), each (B, T): right padding, labels IGNORE on the first
    `prefix` tokens and on padding (the model shifts labels itself)."""
    rows = [token_ids(tokenizer, t)[:max_tokens] for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros(len(rows), width, dtype=torch.long)  # (B, T)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    labels = ids.masked_fill(mask == 0, IGNORE)
    labels[:, :prefix] = IGNORE
    return ids, mask, labels


def _lm_loss(lm, tokenizer, texts: list[str], prefix: int, max_tokens: int, router_aux: bool) -> Tensor:
    ids, mask, labels = lm_batch(tokenizer, texts, prefix, max_tokens)
    return lm(
        input_ids=ids, attention_mask=mask, labels=labels, output_router_logits=router_aux, use_cache=False
    ).loss


def train_lm(
    lm: LensGptOssEncoder,
    tokenizer,
    *,
    seed: int,
    steps: int,
    batch_size: int = 16,
    lr: float = 3e-3,
    deadline: float | None = None,
    log=None,
) -> TrainLog:
    """Causal-LM pre-training on items step * batch_size ... of stream `seed` (with GPT-OSS's router
    load-balancing loss), then frozen (eval, requires_grad False). Returns the loss log."""
    prefix = HarmonyTemplate("2026-01-01").prefix_length(tokenizer)  # every date gives the same length
    max_tokens = MAX_TOKENS
    lm.requires_grad_(True)

    def loss_fn(step: int) -> Tensor:
        texts = [lm_text(seed, step * batch_size + j) for j in range(batch_size)]
        return _lm_loss(lm, tokenizer, texts, prefix, max_tokens, router_aux=True)

    out = train(lm, loss_fn, steps=steps, lr=lr, deadline=deadline, log=log)
    lm.requires_grad_(False)
    return out


@torch.no_grad()
def held_out_loss(lm: LensGptOssEncoder, tokenizer, seed: int, n: int = 64, batch_size: int = 16) -> float:
    """Mean token cross-entropy (nats) on n held-out captions, prefix excluded, no router loss."""
    prefix = HarmonyTemplate("2026-01-01").prefix_length(tokenizer)
    lm.eval()
    total, count = 0.0, 0
    for start in range(0, n, batch_size):
        texts = [lm_text(seed, VAL_START + i) for i in range(start, min(start + batch_size, n))]
        ids, mask, labels = lm_batch(tokenizer, texts, prefix, MAX_TOKENS)
        tokens = int((labels[:, 1:] != IGNORE).sum())
        loss = lm(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
        total, count = total + loss.item() * tokens, count + tokens
    return total / max(count, 1)
