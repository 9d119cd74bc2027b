"""`LensGptOssEncoder` and `encode_prompts`: prompts -> multi-layer LM features for the denoiser.

Semantics (REFERENCE 6): render each prompt with the chat template; tokenise with right padding and
truncation at `max_length` tokens including the template; take the residual stream after each
selected decoder layer (no final norm, nothing after the deepest layer runs); drop the template
prefix (97 tokens for GPT-OSS + Harmony) from features and mask.

Importing this module registers `LensGptOssEncoder` as `transformers.LensGptOssEncoder`: diffusers
resolves a `model_index.json` entry ("transformers", "LensGptOssEncoder") with
`getattr(importlib.import_module("transformers"), "LensGptOssEncoder")`, so released pipeline
folders load after `import lens.text.encoder` (which `lens.LensGptOssEncoder` triggers).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import torch
import transformers as _transformers_at_import
from torch import Tensor
from transformers import GptOssForCausalLM

from lens.errors import LensError
from lens.text.chat import ChatTemplate, default_template, token_ids
from lens.text.features import layer_features

DEFAULT_LAYERS = (5, 11, 17, 23)
DEFAULT_MAX_LENGTH = 512


class LensGptOssEncoder(GptOssForCausalLM):
    """The released `text_encoder` class: GPT-OSS unchanged; Lens only reads its hidden states."""


def _register_in_transformers() -> None:
    """Make ("transformers", "LensGptOssEncoder") in a model_index.json resolvable.

    The first import of `transformers.processing_utils` re-executes transformers' `__init__` and puts
    a NEW module object in `sys.modules["transformers"]` (transformers' `direct_transformers_import`),
    so the class is set on the module diffusers will import as well as on the one bound here.
    """
    importlib.import_module("transformers.processing_utils")  # do that swap now, before registering
    for module in (_transformers_at_import, sys.modules["transformers"]):
        module.LensGptOssEncoder = LensGptOssEncoder


_register_in_transformers()


def _model_device(lm: torch.nn.Module) -> torch.device:
    param = next(lm.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _check_prompts(prompts) -> list:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise LensError(
            f"prompts must be a list of strings, got {type(prompts).__name__}: wrap one prompt as [p]."
        )
    if len(prompts) == 0:
        raise LensError("prompts is empty: pass at least one prompt.")
    return list(prompts)


def encode_prompts(
    text_encoder,
    tokenizer,
    prompts: list[str],
    *,
    layers: Sequence[int] = DEFAULT_LAYERS,
    template: ChatTemplate | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    grad: bool = False,
    allow_empty: bool = False,
) -> tuple[Tensor, Tensor]:
    """Text features (B, S, L, D) and mask (B, S) bool for `prompts`.

    S is the longest prompt's token count after the template prefix (right padding, zeros at
    padding), L = len(layers) in the given order, D the LM hidden size; mask is True on real tokens.
    template None picks Harmony for GPT-OSS LMs and the tokenizer's chat template otherwise.
    device: where the LM runs (default: its parameters' device); dtype: of the returned features
    (default: the LM's residual stream dtype). grad: keep the autograd graph (an LM that trains).
    allow_empty: encode blank prompts as written (the template around an empty user message), as the
    released pipeline does; by default they are refused.
    """
    prompts = _check_prompts(prompts)
    if isinstance(max_length, bool) or not isinstance(max_length, int):
        raise LensError(f"max_length must be an int number of tokens, got {max_length!r}.")
    template = template if template is not None else default_template(text_encoder, tokenizer)
    texts = [template.render(p, allow_empty=allow_empty) for p in prompts]  # validates every prompt
    prefix = template.prefix_ids(tokenizer)
    if max_length <= len(prefix):
        raise LensError(
            f"max_length={max_length} leaves no room for the prompt after the {len(prefix)}-token "
            f"template prefix: use max_length > {len(prefix)} (Lens uses {DEFAULT_MAX_LENGTH})."
        )
    rows = [token_ids(tokenizer, t)[:max_length] for t in texts]  # truncation includes the template
    for i, row in enumerate(rows):
        if row[: len(prefix)] != prefix:  # its first characters fused with the prefix's last token
            raise LensError(
                f"prompt {i} ({prompts[i][:40]!r}) merges with the template prefix when tokenised: strip "
                "leading whitespace, or use a template whose prefix ends with a special token."
            )

    width = max(len(r) for r in rows)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full(
        (len(rows), width), pad_id if pad_id is not None else 0, dtype=torch.long
    )  # (B, T)
    attention = torch.zeros(len(rows), width, dtype=torch.long)  # (B, T)
    for i, row in enumerate(rows):  # right padding, whatever the tokenizer's padding_side says
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1

    device = torch.device(device) if device is not None else _model_device(text_encoder)
    hidden = layer_features(
        text_encoder, input_ids.to(device), attention.to(device), layers, grad
    )  # (B, T, L, D)
    mask = attention[:, len(prefix) :].to(device=device, dtype=torch.bool)  # (B, S)
    features = hidden[:, len(prefix) :]  # (B, S, L, D)
    features = torch.where(
        mask[:, :, None, None], features, torch.zeros((), dtype=features.dtype, device=device)
    )
    if dtype is not None:
        features = features.to(dtype)
    return features, mask
