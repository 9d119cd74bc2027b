"""The training loop both nano components share: AdamW, linear warm-up then cosine decay, gradient
clipping, a step budget with an optional wall-clock deadline, and a loss log.

The step count is what makes a run reproducible (same seed and steps give the same weights); the
deadline is a safety cap for slow machines, and a run it cuts short says so in its log.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from lens.errors import LensError

WARMUP_SHARE = 0.05
FINAL_LR_SHARE = 0.1


@dataclass
class TrainLog:
    """What a run did: (step, mean loss over the last `log_every` steps) pairs, steps run, seconds."""

    curve: list[tuple[int, float]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    stopped_by_deadline: bool = False

    def as_dict(self) -> dict:
        return {
            "curve": [[s, round(v, 5)] for s, v in self.curve],
            "steps": self.steps,
            "seconds": round(self.seconds, 1),
            "stopped_by_deadline": self.stopped_by_deadline,
        }


def lr_factor(step: int, steps: int) -> float:
    """Multiplier of the peak LR at `step` (0-based): linear warm-up, cosine down to FINAL_LR_SHARE."""
    warmup = max(1, int(steps * WARMUP_SHARE))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return FINAL_LR_SHARE + (1 - FINAL_LR_SHARE) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train(
    model: torch.nn.Module,
    loss_fn: Callable[[int], torch.Tensor],
    *,
    steps: int,
    lr: float,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    deadline: float | None = None,
    log_every: int = 25,
    log: Callable[[str], None] | None = None,
) -> TrainLog:
    """Run `steps` optimiser steps of `loss_fn(step)` on `model`'s trainable parameters.

    deadline: a `time.monotonic()` value after which the run stops early (None: never).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise LensError(f"steps must be a positive int, got {steps!r}.")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps))
    out, window, start = TrainLog(), [], time.monotonic()
    model.train()
    for step in range(steps):
        if deadline is not None and time.monotonic() > deadline:
            out.stopped_by_deadline = True
            break
        loss = loss_fn(step)
        if not torch.isfinite(loss):
            raise LensError(
                f"the training loss became {loss.item()} at step {step}: lower the learning rate."
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        sched.step()
        window.append(loss.item())
        out.steps = step + 1
        if len(window) == log_every or step == steps - 1:
            out.curve.append((step + 1, sum(window) / len(window)))
            window = []
            if log is not None:
                log(f"step {step + 1}/{steps} loss {out.curve[-1][1]:.4f} ({time.monotonic() - start:.0f} s)")
    if window:  # stopped by the deadline mid-window
        out.curve.append((out.steps, sum(window) / len(window)))
    out.seconds = time.monotonic() - start
    model.eval()
    return out


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block on `n` torch CPU threads, then restore the count. Models this small run faster on
    one thread than on two contended ones (measured: 1.4 s vs 2.9-11 s for the same 10 LM steps)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
