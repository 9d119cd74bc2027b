"""Exponential moving average of the denoiser weights: ema <- d * ema + (1 - d) * weights.

The decay warms up, d = min(decay, (1 + step) / (10 + step)) (diffusers' `EMAModel` rule): with a
fixed 0.998 the average of a 1,000-step run still holds 0.998**1000 = 13 % of the random
initialisation, and the nano model's EMA samples at step 500 were texture noise while its raw weights
already drew the right backgrounds.

Shadows have the same type and sharding as the parameters (DTensor shards under FSDP), so they are
saved and resharded by DCP like the model, and the update touches only the local shards.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lens.train.parallelize import clean_name


def _local(t: Tensor) -> Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.names, self.params = [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:  # frozen (a LoRA run's base): its average is itself
                continue
            self.names.append(clean_name(name))
            self.params.append(p)
        self.shadow = [p.detach().clone().float() for p in self.params]

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the weights after optimiser step `step` (0-based)."""
        weight = 1.0 - self.decay_at(step)
        torch._foreach_lerp_(
            [_local(s) for s in self.shadow], [_local(p).float() for p in self.params], weight
        )

    def state_dict(self) -> dict[str, Tensor]:
        return dict(zip(self.names, self.shadow))

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for name, s in zip(self.names, self.shadow):
            _local(s).copy_(_local(state[name]))
