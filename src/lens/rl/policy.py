"""The three policies of DiffusionNFT on one denoiser: theta (the trained LoRA adapter), the old policy
(a frozen copy of the adapter's weights) and the reference (the base: the adapter switched off).

One set of base weights serves all three. The old policy runs the same modules with its own adapter
tensors (`torch.func.functional_call`), the reference runs them with peft's adapter layers disabled,
so neither costs a second copy of a multi-GB base.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from lens.train.ema import EMA


def build_policy(view, activation_checkpointing: bool, device: torch.device) -> nn.Module:
    """The base denoiser of `view` (a training Config) with a fresh LoRA adapter (an exact no-op at
    first); only the adapter trains."""
    from lens.lora import add_lora
    from lens.train.denoiser import build_model
    from lens.train.parallelize import apply_ac

    model = build_model(view.model, view.train.seed)
    add_lora(model, **view.model.lora_kwargs())
    if activation_checkpointing:
        apply_ac(model)
    return model.to(device)


class OldPolicy(EMA):
    """The frozen sampling policy: it draws the rollouts and gives v_old. After every `every`-th
    optimiser step, old <- decay * old + (1 - decay) * theta (decay 0: a copy of theta).

    It lives in the checkpoint's EMA slot, so DCP saves and resumes it with the model, and
    `lens export` writes it by default (the policy whose rollouts the logged rewards scored);
    `lens export --weights model` writes theta."""

    def __init__(self, model: nn.Module, decay: float, every: int):
        super().__init__(model, decay)
        self.every = every
        # the module paths as functional_call needs them (EMA's names are the wrapper-free ones)
        paths = [name for name, p in model.named_parameters() if p.requires_grad]
        self.weights = dict(zip(paths, self.shadow))

    def decay_at(self, step: int) -> float:
        return self.decay  # constant: no warm-up, unlike the training EMA

    def after_step(self, step: int) -> None:
        """Called after optimiser step `step` (0-based)."""
        if (step + 1) % self.every == 0:
            self.update(step)

    def forward(self, model: nn.Module) -> Callable:
        """`model` called with the old adapter weights in place of theta's."""

        def call(*args, **kwargs):
            return torch.func.functional_call(model, self.weights, args, kwargs)

        return call


@contextlib.contextmanager
def adapter_off(model: nn.Module) -> Iterator[nn.Module]:
    """The reference policy: the base alone (peft's adapter layers disabled, then enabled again)."""
    model.disable_adapters()
    try:
        yield model
    finally:
        model.enable_adapters()


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode (no LoRA dropout) without gradients, then back to train mode: rollouts, v_old, v_ref."""
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train()
