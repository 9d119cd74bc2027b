"""Sampling pieces: the shared sigma shift and schedules (`schedule`), guidance (`guidance`) and the one
Euler loop (`euler`)."""

from lens.sampling.euler import Conditions, denoiser_velocity, euler_sample
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
    "Conditions",
    "apply_cfg",
    "base_sigmas",
    "denoiser_velocity",
    "empirical_mu",
    "euler_sample",
    "inference_sigmas",
    "logit_normal_mean",
    "make_scheduler",
    "sample_training_sigmas",
    "scheduler_sigmas",
    "time_shift",
]
