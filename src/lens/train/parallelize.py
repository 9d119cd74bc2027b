"""Activation checkpointing, torch.compile and FSDP2, applied from outside the model (torchtitan order).

`parallelize(model, ...)` runs AC -> compile -> FSDP on `model.transformer_blocks`; the model code
itself has no distributed logic. Each block is one FSDP unit (its parameters are all-gathered just
before it runs and freed after), the root unit holds the embedders and the output head.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

log = logging.getLogger("lens.train")

# FQN prefixes that wrappers add and state dicts must not carry
WRAPPER_PREFIXES = ("_checkpoint_wrapped_module.", "_orig_mod.", "_fsdp_wrapped_module.")


def clean_name(name: str) -> str:
    for p in WRAPPER_PREFIXES:
        name = name.replace(p, "")
    return name


def apply_ac(model: nn.Module) -> None:
    """Full activation checkpointing per block: keep only block inputs, recompute inside on backward."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    blocks = model.transformer_blocks
    for i, block in enumerate(blocks):
        # the recompute must draw the same dropout masks as the forward (LoRA dropout); Lens's own
        # blocks draw no random numbers, so they skip saving and restoring the RNG state
        dropout = any(isinstance(m, nn.Dropout) and m.p > 0 for m in block.modules())
        blocks[i] = checkpoint_wrapper(block, preserve_rng_state=dropout)
    log.info("applied activation checkpointing to %d blocks", len(blocks))


def apply_compile(model: nn.Module) -> None:
    """Compile each block on its own: 48 identical blocks compile once and reuse the graph."""
    import torch._dynamo

    # one graph per bucket shape (27 in stage 2) plus packs of varying length
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    for block in model.transformer_blocks:
        block.compile(dynamic=None)
    log.info("compiled %d blocks", len(model.transformer_blocks))


def apply_fsdp(
    model: nn.Module, mesh, param_dtype: torch.dtype | None, reshard_after_forward: bool = True
) -> None:
    """fully_shard every block, then the root (embedders, output head)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # the root returns the output of a Linear on (B, N, D), a view; nothing modifies it in place
    warnings.filterwarnings("ignore", message=".*FSDP2-wrapped module .* returned a view tensor.*")
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    blocks = model.transformer_blocks
    for i, block in enumerate(blocks):
        # the last block's parameters are needed again first in backward: keep them gathered
        fully_shard(
            block,
            mesh=mesh,
            mp_policy=mp,
            reshard_after_forward=reshard_after_forward and i < len(blocks) - 1,
        )
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard_after_forward)
    log.info("applied FSDP2 (fully_shard) to %d blocks and the root over %d ranks", len(blocks), mesh.size())


def parallelize(model: nn.Module, train_cfg, parallel_cfg, dist_info) -> nn.Module:
    """AC -> compile -> FSDP (or a plain move to the device without a process group)."""
    if train_cfg.activation_checkpointing:
        apply_ac(model)
    if train_cfg.compile:
        apply_compile(model)
    if dist_info.mesh is not None:
        param_dtype = torch.bfloat16 if train_cfg.precision == "bf16" else None
        model.to(dist_info.device)
        apply_fsdp(model, dist_info.mesh, param_dtype, parallel_cfg.reshard_after_forward)
    else:
        model.to(dist_info.device)
    return model
