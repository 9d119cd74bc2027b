"""The distillation objectives (REFERENCE 10), as plain tensor functions. Shapes: x (B, N, C) tokens.

Flow matching: x_t = (1 - s) x + s n, the denoiser predicts v = n - x, so its clean-image prediction
is x0(x_t) = x_t - s v (`x0_prediction`).

**Distribution matching (DMD2, Yin et al. 2024; as their released code computes it).** For a student
sample x, noised at s to x_t:

    g = (x0_fake(x_t) - x0_real(x_t)) / mean_{N,C} |x - x0_real(x_t)|      (per sample)
    L = 1/2 * mean_{B,N,C} (x - stopgrad(x - g))^2                          so dL/dx = g / (B N C)

(`matching_gradient`, `dmd_loss`): x moves along x0_real - x0_fake, from where the fake score (which
tracks the student's distribution) puts it toward where the teacher does.

**Decoupled DMD (Liu et al. 2025).** With a CFG teacher, x0_real = x0_cfg and the gradient splits in
two: x0_fake - x0_cfg = (x0_fake - x0_cond) + (x0_cond - x0_cfg). The distribution-matching (DM) term
is `matching_gradient(x, x0_fake, x0_cond)`, the CFG-augmentation (CA) term
`matching_gradient(x, x0_cond, x0_cfg)`: the teacher's conditional prediction in the fake score's
place and its guided one (`lens.sampling.guidance.apply_cfg` at w) as the real score. Each term has
its own noise level and its own normaliser; with one level and one normaliser their sum is DMD2's
gradient with the CFG teacher.

**Adversarial (`discriminator_loss`, `generator_loss`)** on logits D (B,) of real (the teacher's own
samples) and fake (the student's) images:

    non-saturating (DMD2):  L_D = softplus(-D(real)) + softplus(D(fake)),   L_G = softplus(-D(fake))
    hinge:                  L_D = relu(1 - D(real)) + relu(1 + D(fake)),    L_G = -D(fake)

each a mean over the batch.

**Approximate R1 (Lin et al. 2025, "Diffusion Adversarial Post-Training for One-Step Video
Generation").** R1 penalises ||grad_x D(x)||^2 on real x, which needs a double backward
through the frozen teacher; its approximation penalises how much D changes under a small perturbation
of its real input instead:

    L_aR1 = mean_B (D(x) - D(x + alpha * eps))^2,   eps ~ N(0, I),   added to L_D as gamma * L_aR1

(`approximate_r1`). Here x is the discriminator's input (the noised real image; our reading, the
paper perturbs "the real input") and, as REFERENCE 10 gives them, gamma = 1.0 and alpha = 0.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def x0_prediction(x_t: Tensor, sigma: Tensor, v: Tensor) -> Tensor:
    """x_t - sigma * v: the clean tokens a velocity v (B, N, C) at noise levels sigma (B,) points to."""
    return x_t - sigma.to(x_t)[:, None, None] * v


def matching_gradient(x: Tensor, x0_fake: Tensor, x0_real: Tensor) -> Tensor:
    """DMD's normalised gradient (x0_fake - x0_real) / mean|x - x0_real| per sample, no graph; a
    sample whose normaliser is 0 gets 0."""
    with torch.no_grad():
        scale = (x - x0_real).float().abs().flatten(1).mean(dim=1)[:, None, None]  # (B, 1, 1)
        return torch.nan_to_num((x0_fake - x0_real).float() / scale, nan=0.0, posinf=0.0, neginf=0.0)


def dmd_loss(x: Tensor, grad: Tensor) -> Tensor:
    """1/2 mean (x - stopgrad(x - grad))^2: a scalar whose gradient with respect to x is grad / x.numel()."""
    return 0.5 * F.mse_loss(x.float(), (x - grad).detach().float())


def denoising_loss(v: Tensor, x: Tensor, noise: Tensor) -> Tensor:
    """The fake score's flow-matching loss on student samples x: mean (v - (noise - x))^2."""
    return (v.float() - (noise - x).float()).pow(2).mean()


def discriminator_loss(real: Tensor, fake: Tensor, kind: str) -> Tensor:
    if kind == "hinge":
        return (F.relu(1.0 - real) + F.relu(1.0 + fake)).mean()
    return (F.softplus(-real) + F.softplus(fake)).mean()


def generator_loss(fake: Tensor, kind: str) -> Tensor:
    return (-fake).mean() if kind == "hinge" else F.softplus(-fake).mean()


def approximate_r1(real: Tensor, perturbed: Tensor) -> Tensor:
    """mean (D(x) - D(x + alpha eps))^2 over the batch, from the two (B,) logits."""
    return (real - perturbed).pow(2).mean()


@torch.no_grad()
def pull_toward(params: list[Tensor], targets: list[Tensor], weight: float) -> None:
    """params <- (1 - weight) params + weight targets, in place (the fake score toward the student)."""
    torch._foreach_lerp_(params, [t.to(p.dtype) for p, t in zip(params, targets)], weight)
