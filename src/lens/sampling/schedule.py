"""Noise levels: the one resolution-dependent shift shared by training and inference.

Flow matching here uses x_t = (1 - sigma) * x0 + sigma * noise, sigma in [0, 1] (1 is pure noise).
Both sides bend sigma with the same map, `time_shift` (sigma' = e^mu / (e^mu + (1/sigma - 1)), i.e.
sigmoid(mu + logit(sigma))):

- inference: sigmas = linspace(1, 1/N, N), shifted with mu from the FLUX.2 empirical rule, then 0;
- training: logit-normal sigmas, sigmoid(mean + std * randn), written as the same shift applied to
  sigmoid(std * randn), with the mean rising from 1.0 at 256 image tokens to 1.3 at 4096.

`make_scheduler` / `scheduler_sigmas` give the diffusers `FlowMatchEulerDiscreteScheduler` that the
released checkpoints name, configured so it reproduces `inference_sigmas` exactly. A distilled
student's scheduler config names its own fixed steps instead of linspace (`with_fixed_sigmas`); they
are shifted the same way, so the student runs at each resolution the sigmas it was trained at.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lens.errors import LensError

if TYPE_CHECKING:  # pragma: no cover
    from diffusers import FlowMatchEulerDiscreteScheduler

# FLUX.2 empirical mu rule (REFERENCE section 5): two lines in the token count n, one fitted for
# 10-step and one for 200-step sampling; above 4300 tokens only the 200-step line is used.
_A1, _B1 = 8.73809524e-05, 1.89833333
_A2, _B2 = 0.00016927, 0.45666666
_LARGE_IMAGE_TOKENS = 4300
# scheduler config key: a distilled student's unshifted sigmas (`lens distill`). The leading underscore
# keeps diffusers from warning that the scheduler ignores it; it is saved and loaded with the config.
FIXED_SIGMAS = "_lens_sigmas"


def noised(x0: Tensor, noise: Tensor, sigma: Tensor | float) -> Tensor:
    """The flow-matching point (1 - sigma) * x0 + sigma * noise of (B, N, C) tokens; `sigma` a float,
    a 0-d tensor, or one level per sample (B,)."""
    s = torch.as_tensor(sigma).to(x0)
    s = s[:, None, None] if s.ndim == 1 else s
    return (1 - s) * x0 + s * noise


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise LensError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def time_shift(sigmas: Tensor, mu: float | Tensor) -> Tensor:
    """e^mu / (e^mu + (1/sigma - 1)), elementwise; maps 0 -> 0 and 1 -> 1 exactly.

    `mu` may be a float or a tensor broadcastable to `sigmas` (e.g. one mu per sample). Computed in
    float32 and returned in `sigmas`' dtype. mu > 0 moves every inner sigma toward 1 (more noise).
    """
    s = sigmas.float()
    e_mu = torch.exp(torch.as_tensor(mu, dtype=torch.float32, device=s.device))
    # 1/0 = inf gives e^mu / inf = 0 at sigma = 0; at sigma = 1 the bracket is 0 and the result is 1.
    return (e_mu / (e_mu + (1.0 / s - 1.0))).to(sigmas.dtype)


def empirical_mu(image_tokens: int, num_steps: int) -> float:
    """FLUX.2's shift for `image_tokens` latent tokens sampled in `num_steps` steps.

    About 2.291 at 4096 tokens / 4 steps, 2.198 at 20, 2.023 at 50; 1.828 at 8100 tokens (any steps).
    """
    n = _positive_int(image_tokens, "image_tokens")
    steps = _positive_int(num_steps, "num_steps")
    m200 = _A2 * n + _B2
    if n > _LARGE_IMAGE_TOKENS:
        return float(m200)
    m10 = _A1 * n + _B1
    slope = (m200 - m10) / 190.0  # line through (10, m10) and (200, m200)
    return float(m200 + slope * (steps - 200.0))


def base_sigmas(num_steps: int) -> Tensor:
    """Unshifted schedule linspace(1, 1/N, N), float32 (computed in float64 as numpy.linspace does)."""
    n = _positive_int(num_steps, "num_steps")
    return torch.linspace(1.0, 1.0 / n, n, dtype=torch.float64).float()  # (N,)


def inference_sigmas(num_steps: int, image_tokens: int) -> Tensor:
    """(N + 1,) float32: linspace(1, 1/N, N) shifted with `empirical_mu`, then a final 0."""
    mu = empirical_mu(image_tokens, num_steps)
    shifted = time_shift(base_sigmas(num_steps), mu)  # (N,)
    return torch.cat([shifted, shifted.new_zeros(1)])  # (N + 1,)


def make_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """The diffusers Euler flow-matching scheduler, set up to reproduce `inference_sigmas`.

    Dynamic (per-call mu) exponential shifting, no static shift, no terminal stretch, no
    Karras/exponential/beta re-spacing, deterministic steps. Its timesteps are sigmas * 1000.
    Use it through `scheduler_sigmas`, which passes our sigmas and mu to `set_timesteps`.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=1.0,
        use_dynamic_shifting=True,
        time_shift_type="exponential",
        shift_terminal=None,
        invert_sigmas=False,
        use_karras_sigmas=False,
        use_exponential_sigmas=False,
        use_beta_sigmas=False,
        stochastic_sampling=False,
    )


def scheduler_sigmas(
    scheduler: FlowMatchEulerDiscreteScheduler,
    num_steps: int,
    image_tokens: int,
    device: torch.device | str | None = None,
) -> Tensor:
    """Call `scheduler.set_timesteps` the Lens way and return `scheduler.sigmas` ((N + 1,) float32).

    The unshifted sigmas are `base_sigmas(N)`, or the scheduler config's `FIXED_SIGMAS` when it holds
    N of them (a distilled student's steps); either is shifted with `empirical_mu`. After this,
    `scheduler.timesteps` (N,) holds sigmas[:-1] * 1000, the values to pass to the denoiser and to
    `scheduler.step`.
    """
    mu = empirical_mu(image_tokens, num_steps)
    fixed = scheduler.config.get(FIXED_SIGMAS)
    base = base_sigmas(num_steps) if not fixed or len(fixed) != num_steps else torch.tensor(fixed)
    scheduler.set_timesteps(sigmas=base.float().numpy(), mu=mu, device=device)
    return scheduler.sigmas


def with_fixed_sigmas(scheduler: FlowMatchEulerDiscreteScheduler, sigmas) -> FlowMatchEulerDiscreteScheduler:
    """`scheduler` whose config also holds `sigmas` (unshifted, descending in (0, 1]) as the steps
    `scheduler_sigmas` uses for that many steps; saved in scheduler_config.json with it."""
    scheduler.register_to_config(**{FIXED_SIGMAS: [float(s) for s in sigmas]})
    return scheduler


def logit_normal_mean(
    image_tokens: int,
    lo: float = 1.0,
    hi: float = 1.3,
    lo_tokens: int = 256,
    hi_tokens: int = 4096,
) -> float:
    """Training logit-normal mean: `lo` at `lo_tokens`, `hi` at `hi_tokens`, linear between, clamped.

    The Lens stage-2 rule (1.0 at 256 tokens, 1.3 at 4096); it gives 1.06 at 512x512 (1024 tokens),
    the stage-1 value.
    """
    n = _positive_int(image_tokens, "image_tokens")
    if hi_tokens <= lo_tokens:
        raise LensError(f"hi_tokens ({hi_tokens}) must be greater than lo_tokens ({lo_tokens}).")
    t = min(max((n - lo_tokens) / (hi_tokens - lo_tokens), 0.0), 1.0)
    return float(lo + t * (hi - lo))


def sample_training_sigmas(
    batch: int,
    mean: float | Tensor,
    std: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """(batch,) float32 logit-normal sigmas: sigmoid(mean + std * randn).

    Written as `time_shift(sigmoid(std * randn), mean)` (the two are equal) so that training and
    inference share one shift. `mean` may be a float or a (batch,) tensor (one mean per sample, e.g.
    for a batch that mixes resolutions).
    """
    b = _positive_int(batch, "batch")
    if std < 0:
        raise LensError(f"std must be >= 0; got {std}.")
    if isinstance(mean, Tensor) and mean.numel() not in (1, b):
        raise LensError(f"mean must be a float or hold 1 or batch={b} values; got shape {tuple(mean.shape)}.")
    noise = torch.randn(b, generator=generator, device=device, dtype=torch.float32)  # (B,)
    mu = mean.reshape(-1).float() if isinstance(mean, Tensor) else mean  # (B,) or (1,) or float
    return time_shift(torch.sigmoid(std * noise), mu)  # (B,)
