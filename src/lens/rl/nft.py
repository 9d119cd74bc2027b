"""The DiffusionNFT objective (REFERENCE 10), as plain tensor functions.

Rewards -> optimality r in [0, 1], within each prompt's group of images:

    r = 1/2 + 1/2 * clip((R - mean of the group's R) / Z, -1, 1)

with Z the standard deviation of all the step's rewards (every group; population std, floored at
`eps`). An image better than its group's mean by Z or more gets r = 1, one worse by Z or more r = 0; a
group whose images all score the same gets r = 1/2 throughout.

Loss per sample, on the noised rollout x_t = (1 - t) x0 + t * noise with target v = noise - x0:

    r * ||v+ - v||^2 + (1 - r) * ||v- - v||^2 + kl_weight * ||v_theta - v_ref||^2
    v+ = (1 - beta) * v_old + beta * v_theta,   v- = (1 + beta) * v_old - beta * v_theta

each squared norm a mean over tokens and channels. With r = 1/2 the first two terms are
||v_old - v||^2 + beta^2 ||v_theta - v_old||^2: a sample of average reward only holds theta near the
old policy; with theta = old the gradient is beta (2r - 1) times flow matching's on that sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def optimality(rewards: Tensor, eps: float = 1e-6) -> Tensor:
    """(P, G) raw rewards (P prompts, G images each) -> (P, G) r in [0, 1], float32."""
    if rewards.ndim != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (prompts, group >= 2), got shape {tuple(rewards.shape)}")
    raw = rewards.double()
    z = raw.std(unbiased=False).clamp_min(eps)
    advantage = (raw - raw.mean(dim=1, keepdim=True)) / z
    return (0.5 + 0.5 * advantage.clamp(-1.0, 1.0)).float()


@dataclass
class NFTLoss:
    loss: Tensor  # (B,) the per-sample objective (what is minimised)
    kl: Tensor  # (B,) ||v_theta - v_ref||^2, unweighted


def _sq(x: Tensor) -> Tensor:
    return x.float().pow(2).flatten(1).mean(dim=1)  # (B, ...) -> (B,)


def nft_loss(
    v_theta: Tensor,
    v_old: Tensor,
    v_ref: Tensor,
    target: Tensor,
    r: Tensor,
    beta: float = 1.0,
    kl_weight: float = 0.0,
) -> NFTLoss:
    """Velocities (B, N, C): theta (with gradients), old and reference (without), the flow-matching
    target noise - x0; r (B,) in [0, 1]."""
    v_pos = (1.0 - beta) * v_old + beta * v_theta
    v_neg = (1.0 + beta) * v_old - beta * v_theta
    kl = _sq(v_theta - v_ref)
    r = r.to(device=v_theta.device, dtype=torch.float32)
    loss = r * _sq(v_pos - target) + (1.0 - r) * _sq(v_neg - target) + kl_weight * kl
    return NFTLoss(loss=loss, kl=kl.detach())
