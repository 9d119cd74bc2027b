"""Shared sigma shift: FLUX.2 mu rule, inference schedule, diffusers scheduler, training sigmas."""

import math

import pytest
import torch

from lens.errors import LensError
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


@pytest.mark.parametrize(
    ("tokens", "steps", "mu"),
    [(4096, 4, 2.291), (4096, 20, 2.198), (4096, 50, 2.023), (8100, 4, 1.828), (8100, 50, 1.828)],
)
def test_empirical_mu_values(tokens, steps, mu):
    assert empirical_mu(tokens, steps) == pytest.approx(mu, abs=1e-3)


def test_empirical_mu_line_hits_its_anchor_points():
    n = 1024
    assert empirical_mu(n, 10) == pytest.approx(8.73809524e-05 * n + 1.89833333, abs=1e-9)
    assert empirical_mu(n, 200) == pytest.approx(0.00016927 * n + 0.45666666, abs=1e-9)


def test_time_shift_values_and_endpoints():
    s = torch.tensor([0.0, 0.25, 0.5, 1.0])
    out = time_shift(s, 1.5)
    assert not torch.isnan(out).any()
    assert out[0] == 0 and out[-1] == 1
    assert out[2].item() == pytest.approx(1 / (1 + math.exp(-1.5)), abs=1e-6)  # sigmoid(mu) at 0.5
    e = math.exp(1.5)
    assert out[1].item() == pytest.approx(e / (e + 3.0), abs=1e-6)
    # per-sample mu broadcasts
    per = time_shift(torch.tensor([0.5, 0.5]), torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(per, torch.sigmoid(torch.tensor([0.0, 2.0])))


@pytest.mark.parametrize("steps", [1, 4, 20, 50])
def test_inference_sigmas_shape_endpoints_monotone(steps):
    s = inference_sigmas(steps, 4096)
    assert s.dtype == torch.float32 and s.shape == (steps + 1,)
    assert s[0] == 1 and s[-1] == 0
    assert (s[1:] < s[:-1]).all()
    if steps > 1:  # mu > 0 pushes every inner sigma toward noise
        assert (s[1:-1] > base_sigmas(steps)[1:]).all()
        mu = empirical_mu(4096, steps)
        torch.testing.assert_close(s[:-1], time_shift(torch.linspace(1, 1 / steps, steps), mu))


@pytest.mark.parametrize(("steps", "tokens"), [(1, 256), (4, 4096), (20, 4096), (50, 1024), (20, 8100)])
def test_diffusers_scheduler_reproduces_inference_sigmas(steps, tokens):
    sched = make_scheduler()
    got = scheduler_sigmas(sched, steps, tokens)
    torch.testing.assert_close(got, inference_sigmas(steps, tokens), rtol=0, atol=1e-6)
    torch.testing.assert_close(sched.timesteps, got[:-1] * 1000)


def test_scheduler_step_is_euler():
    sched = make_scheduler()
    sig = scheduler_sigmas(sched, 4, 4096)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 3, generator=g)
    for i, t in enumerate(sched.timesteps[:2]):
        v = torch.randn(1, 8, 3, generator=g)
        out = sched.step(v, t, x).prev_sample
        torch.testing.assert_close(out, x + (sig[i + 1] - sig[i]) * v)
        x = out


@pytest.mark.parametrize("bad", [0, -3, 2.5, "4", True])
def test_bad_step_counts_raise(bad):
    with pytest.raises(LensError, match="num_steps"):
        inference_sigmas(bad, 4096)
    with pytest.raises(LensError, match="num_steps"):
        empirical_mu(4096, bad)


def test_bad_token_count_raises():
    with pytest.raises(LensError, match="image_tokens"):
        empirical_mu(0, 20)


def test_logit_normal_mean_interpolates_and_clamps():
    assert logit_normal_mean(256) == pytest.approx(1.0)
    assert logit_normal_mean(4096) == pytest.approx(1.3)
    assert logit_normal_mean(1024) == pytest.approx(1.06)  # stage-1 512x512 value
    assert logit_normal_mean(16) == pytest.approx(1.0)
    assert logit_normal_mean(8100) == pytest.approx(1.3)


def test_training_sigmas_equal_sigmoid_of_shifted_normal():
    mean = torch.tensor([0.0, 1.0, 1.3, -0.5, 2.0])
    got = sample_training_sigmas(5, mean, std=1.5, generator=torch.Generator().manual_seed(7))
    draw = torch.randn(5, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(got, torch.sigmoid(mean + 1.5 * draw), rtol=1e-5, atol=1e-6)
    scalar = sample_training_sigmas(5, 1.06, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(scalar, torch.sigmoid(1.06 + draw), rtol=1e-5, atol=1e-6)


def test_training_sigmas_median_follows_mean():
    s = sample_training_sigmas(4000, 1.3, generator=torch.Generator().manual_seed(0))
    assert ((s > 0) & (s < 1)).all()
    assert torch.logit(s).median().item() == pytest.approx(1.3, abs=0.1)


def test_training_sigmas_reject_bad_mean_shape():
    with pytest.raises(LensError, match="mean"):
        sample_training_sigmas(4, torch.zeros(3))
