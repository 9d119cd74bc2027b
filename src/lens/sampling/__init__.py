"""Sampling pieces: the shared sigma shift and schedules (`schedule`) and guidance (`guidance`)."""

from lens.sampling.guidance import apply_cfg
from lens.sampling.schedule import (
    base_sigmas,
    empirical_mu,
    inference_sigmas,
    logit_normal_mean,
    make_scheduler,
    sample_training_sigmas,
    scheduler_sigmas,
    time_shift,
)

__all__ = [
    "apply_cfg",
    "base_sigmas",
    "empirical_mu",
    "inference_sigmas",
    "logit_normal_mean",
    "make_scheduler",
    "sample_training_sigmas",
    "scheduler_sigmas",
    "time_shift",
]
