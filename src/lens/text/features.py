"""Residual-stream features after chosen decoder layers of any Hugging Face causal LM, with early exit.

Forward hooks on the chosen decoder layers record each layer's output (the residual stream right
after it, so the LM's final norm is never applied), and the hook on the deepest chosen layer stops the
forward by raising, so later layers, the final norm and the LM head never run. The model's own
`forward` still builds the causal / sliding-window masks and rotary embeddings, which keeps this
correct for GPT-OSS, Qwen3, Llama and any model whose decoder layers live in `<base>.layers`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lens.errors import LensError


class _StopForward(Exception):
    """Raised by the hook on the deepest requested layer: everything after it is skipped."""


def decoder_layers(lm: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """(base model, its decoder layers) for a `*ForCausalLM` or a bare base model."""
    base = getattr(lm, getattr(lm, "base_model_prefix", "model"), lm)
    layers = getattr(base, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise LensError(
            f"{type(lm).__name__} has no decoder layers at `.{getattr(lm, 'base_model_prefix', 'model')}"
            ".layers`: pass a Hugging Face causal LM such as GptOssForCausalLM or Qwen3ForCausalLM."
        )
    return base, layers


def check_layers(layers: Sequence[int], depth: int) -> list[int]:
    """The layer indices as a list, or LensError unless each is an int in [0, depth)."""
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or len(layers) == 0:
        raise LensError(f"layers must be a non-empty sequence of decoder-layer indices, got {layers!r}.")
    out = []
    for i in layers:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < depth:
            raise LensError(
                f"layer index {i!r} is out of range: this LM has {depth} decoder layers, "
                f"so use 0-based indices 0..{depth - 1}."
            )
        out.append(i)
    return out


def layer_features(
    lm: nn.Module, input_ids: Tensor, attention_mask: Tensor, layers: Sequence[int], grad: bool = False
) -> Tensor:
    """Hidden states after each of `layers` (0-based), pre-norm, stacked: (B, T, L, D).

    input_ids, attention_mask: (B, T); attention_mask is 1 for real tokens. Nothing after
    max(layers) is executed. Runs in inference mode unless `grad` (an LM that trains with the
    denoiser).
    """
    with torch.inference_mode(not grad):
        return _layer_features(lm, input_ids, attention_mask, layers)


def _layer_features(
    lm: nn.Module, input_ids: Tensor, attention_mask: Tensor, layers: Sequence[int]
) -> Tensor:
    _, blocks = decoder_layers(lm)
    wanted = check_layers(layers, len(blocks))
    last = max(wanted)
    captured: dict[int, Tensor] = {}

    def hook_for(i: int):
        def hook(module, args, output):
            captured[i] = output[0] if isinstance(output, tuple) else output  # (B, T, D)
            if i == last:
                raise _StopForward

        return hook

    handles = [blocks[i].register_forward_hook(hook_for(i)) for i in sorted(set(wanted))]
    try:
        # Call the LM itself, not `base`: hooks on the LM (accelerate's model CPU offload loads the
        # weights onto the execution device in one) only fire through its own forward. The early exit
        # still stops it before the final norm and the LM head.
        lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    if last not in captured:
        raise LensError(f"{type(lm).__name__} did not run decoder layer {last}: is it a causal LM?")
    return torch.stack([captured[i] for i in wanted], dim=2)  # (B, T, L, D)
