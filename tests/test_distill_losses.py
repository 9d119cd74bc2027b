"""`lens distill` without a run: every loss term against a hand computation on tiny tensors, the pull of
the fake score toward the student, the discriminator's feature read, the student's fixed sigmas in a
scheduler config, presets, and config errors as one line."""

import math

import pytest
import torch

from lens.cli import main
from lens.distill.config import load_distill_config
from lens.distill.critic import FeatureHead, feature_blocks, teacher_features
from lens.distill.losses import (
    approximate_r1,
    denoising_loss,
    discriminator_loss,
    dmd_loss,
    generator_loss,
    matching_gradient,
    pull_toward,
    x0_prediction,
)
from lens.errors import LensError
from lens.sampling.guidance import apply_cfg
from lens.sampling.schedule import (
    empirical_mu,
    make_scheduler,
    noised,
    scheduler_sigmas,
    time_shift,
    with_fixed_sigmas,
)


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


# ---------------------------------------------------------------------- distribution matching
def test_matching_gradient_and_dmd_loss_by_hand():
    # B=2, N=1, C=2
    x = torch.tensor([[[1.0, 2.0]], [[0.0, 0.0]]])
    fake = torch.tensor([[[2.0, 2.0]], [[1.0, -1.0]]])
    real = torch.tensor([[[0.0, 1.0]], [[0.0, 0.0]]])
    g = matching_gradient(x, fake, real)
    # sample 0: (fake - real) = (2, 1), mean |x - real| = (1 + 1) / 2 = 1 -> (2, 1)
    # sample 1: mean |x - real| = 0 -> 0 (not inf or nan)
    assert torch.equal(g, torch.tensor([[[2.0, 1.0]], [[0.0, 0.0]]]))

    x = x.clone().requires_grad_(True)
    loss = dmd_loss(x, g)
    assert loss.item() == pytest.approx(0.5 * (4 + 1 + 0 + 0) / 4)  # 1/2 mean g^2
    loss.backward()
    assert torch.allclose(x.grad, g / 4)  # dL/dx = g / (B N C): descent moves x toward real - fake


def test_dm_plus_ca_at_one_level_is_dmd_with_the_guided_teacher():
    """The decoupled terms: DM = (x0_fake - x0_cond), CA = (x0_cond - x0_cfg), with the CFG of
    lens.sampling.guidance; with one normaliser their sum is DMD2's gradient against the guided teacher."""
    gen = torch.Generator().manual_seed(0)
    x, noise = torch.randn(3, 4, 8, generator=gen), torch.randn(3, 4, 8, generator=gen)
    s = torch.tensor([0.2, 0.5, 0.9])
    x_t = noised(x, noise, s)
    assert torch.allclose(x_t, (1 - s[:, None, None]) * x + s[:, None, None] * noise)
    v_fake, v_cond, v_null = (torch.randn(3, 4, 8, generator=gen) for _ in range(3))
    x0_fake, x0_cond = x0_prediction(x_t, s, v_fake), x0_prediction(x_t, s, v_cond)
    x0_cfg = x0_prediction(x_t, s, apply_cfg(v_cond, v_null, 5.0))
    assert torch.allclose(x0_cond, x_t - s[:, None, None] * v_cond)
    scale = (x - x0_cfg).abs().flatten(1).mean(1)[:, None, None]
    ca = matching_gradient(x, x0_cond, x0_cfg)  # normalised against the guided prediction
    dm = (x0_fake - x0_cond) / scale
    assert torch.allclose(dm + ca, matching_gradient(x, x0_fake, x0_cfg), atol=1e-6)


def test_denoising_loss_by_hand():
    v = torch.tensor([[[1.0, 0.0]]])
    x = torch.tensor([[[1.0, 1.0]]])
    noise = torch.tensor([[[3.0, 0.0]]])
    # target noise - x = (2, -1): ((1 - 2)^2 + (0 + 1)^2) / 2
    assert denoising_loss(v, x, noise).item() == pytest.approx(1.0)


# ---------------------------------------------------------------------- adversarial
def test_adversarial_losses_by_hand():
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -1.0])
    d = (2 * softplus(0.0) + softplus(-2.0) + softplus(-1.0)) / 2
    assert discriminator_loss(real, fake, "non-saturating").item() == pytest.approx(d)
    assert generator_loss(fake, "non-saturating").item() == pytest.approx((softplus(0.0) + softplus(1.0)) / 2)
    # hinge: relu(1 - 0) + relu(1 + 0) = 2 and relu(1 - 2) + relu(1 - 1) = 0
    assert discriminator_loss(real, fake, "hinge").item() == pytest.approx(1.0)
    assert generator_loss(fake, "hinge").item() == pytest.approx(0.5)


def test_approximate_r1_by_hand_and_as_the_gradient_penalty_it_approximates():
    assert approximate_r1(torch.tensor([1.0, 2.0]), torch.tensor([0.5, 2.5])).item() == pytest.approx(0.25)
    # for a linear D(x) = w . x, E (D(x) - D(x + alpha eps))^2 = alpha^2 ||w||^2 = alpha^2 ||grad D||^2
    gen = torch.Generator().manual_seed(0)
    w, x = torch.randn(16, generator=gen), torch.randn(4096, 16, generator=gen)
    alpha = 0.1
    perturbed = x + alpha * torch.randn(x.shape, generator=gen)
    assert approximate_r1(x @ w, perturbed @ w).item() == pytest.approx(
        alpha**2 * w.pow(2).sum().item(), rel=0.05
    )


def test_pull_toward_the_student():
    phi = [torch.tensor([1.0, 2.0]), torch.tensor([[0.0]])]
    theta = [torch.tensor([3.0, 6.0]), torch.tensor([[1.0]])]
    pull_toward(phi, theta, 0.03)
    assert torch.allclose(phi[0], torch.tensor([0.97 * 1 + 0.03 * 3, 0.97 * 2 + 0.03 * 6]))
    assert torch.allclose(phi[1], torch.tensor([[0.03]]))
    assert torch.equal(theta[0], torch.tensor([3.0, 6.0]))  # the student is left alone


# ---------------------------------------------------------------------- the discriminator
def test_feature_blocks():
    assert feature_blocks((), 48) == [11, 23, 35, 47]
    assert feature_blocks((), 2) == [0, 1]
    assert feature_blocks((3, 1, 3), 6) == [1, 3]
    with pytest.raises(LensError, match="the teacher has 2 blocks"):
        feature_blocks((2,), 2)


def test_teacher_features_stop_after_the_deepest_block(tiny_denoiser):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 128, generator=gen)
    text = torch.randn(2, 3, 2, 24, generator=gen)
    sigma = torch.tensor([0.3, 0.8])
    ran, full = [], {}

    def record(i):
        def hook(module, args, output):  # returns None: the output stays as it is
            ran.append(i)
            full.setdefault(i, output[0])

        return hook

    hooks = [b.register_forward_hook(record(i)) for i, b in enumerate(tiny_denoiser.transformer_blocks)]
    with torch.no_grad():
        tiny_denoiser(x, text, sigma, image_grid=(4, 4))  # the whole forward, for reference
        ran.clear()
        feats = teacher_features(tiny_denoiser, [0], x, sigma, text, None, (4, 4))
    for h in hooks:
        h.remove()
    assert ran == [0]  # block 1, the output norm and projection never ran
    assert len(feats) == 1 and torch.equal(feats[0], full[0])

    head = FeatureHead(32, 2, 8)
    logits = head([full[0], full[1]])
    expected = sum(h(f).mean(dim=(1, 2)) for h, f in zip(head.heads, (full[0], full[1])))
    assert logits.shape == (2,) and torch.allclose(logits, expected)


# ---------------------------------------------------------------------- the student's steps
def test_fixed_sigmas_in_the_scheduler_config_are_what_the_schedule_shifts(tmp_path):
    fixed = [1.0, 0.8, 0.55, 0.3]
    scheduler = with_fixed_sigmas(make_scheduler(), fixed)
    scheduler.save_pretrained(str(tmp_path))
    loaded = type(scheduler).from_pretrained(str(tmp_path))
    sigmas = scheduler_sigmas(loaded, 4, 256)
    shifted = time_shift(torch.tensor(fixed), empirical_mu(256, 4))
    assert torch.allclose(sigmas, torch.cat([shifted, torch.zeros(1)]))
    # another step count, or a scheduler without them: the pipeline's linspace as before
    assert torch.allclose(scheduler_sigmas(loaded, 8, 256), scheduler_sigmas(make_scheduler(), 8, 256))
    assert not torch.allclose(scheduler_sigmas(make_scheduler(), 4, 256), sigmas)


# ---------------------------------------------------------------------- config
def test_presets():
    cfg = load_distill_config("lens", ["teacher=models/lens", "out=models/turbo", "data.prompts=p.txt"])
    assert (cfg.student.steps, cfg.student_sigmas()) == (4, [1.0, 0.75, 0.5, 0.25])
    assert (cfg.dmd.guidance, cfg.dmd.weight, cfg.adversarial.weight) == (5.0, 0.1, 1e-3)
    assert (cfg.adversarial.r1_gamma, cfg.adversarial.r1_alpha, cfg.adversarial.loss) == (
        1.0,
        0.1,
        "non-saturating",
    )
    assert (cfg.dmd.fake_updates, cfg.dmd.fake_pull) == (4, 0.03)
    assert (cfg.optim.betas, cfg.optim.lr, cfg.optim.fake_lr, cfg.optim.head_lr) == (
        (0.0, 0.9),
        5e-7,
        5e-7,
        1e-4,
    )
    assert cfg.data.sizes[0] == "1024x1024" and len(cfg.sizes()) == 9 and cfg.run.steps == 1000
    debug = load_distill_config("debug", ["out=x", "student.steps=2", "student.sigmas=1,0.4"])
    assert debug.student_sigmas() == [1.0, 0.4] and debug.teacher == "tiny"


@pytest.mark.parametrize(
    "override, message",
    [
        ("student.sigmas=1,0.5", "student.sigmas must be 4 values"),
        ("student.sigmas=1,0.5,0.6,0.2", "descending in (0, 1]"),
        ("dmd.fake_pull=2", "dmd.fake_pull must be in [0, 1]"),
        ("dmd.sigmas=0,0.5", "dmd.sigmas and dmd.ca_sigmas must each be two values"),
        ("dmd.guidance=nan", "dmd.guidance must be a finite number >= 1"),
        ("dmd.fake_updates=0", "dmd.fake_updates must be >= 1"),
        ("adversarial.loss=wasserstein", "adversarial.loss must be one of non-saturating, hinge"),
        ("adversarial.blocks=5", "the teacher has 2 blocks"),
        ("data.sizes=65x64", "multiple of 16"),
        ("optim.head_lr=0", "optim.fake_lr and optim.head_lr must be > 0"),
        ("run.precision=fp8", "run.precision must be one of bf16, fp32"),
        ("dmd.nope=1", "unknown config field 'dmd.nope'"),
    ],
)
def test_bad_config_is_one_line(override, message, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["distill", "tiny", str(out), "--config", "debug", "--run-dir", str(tmp_path / "r")]
    assert main(args + ["--set", override]) == 2
    err = capsys.readouterr().err.strip()  # a tiny teacher's progress bars may come first
    line = err.splitlines()[-1]
    assert "Traceback" not in err and line.startswith("lens distill: error:") and message in line
    assert not out.exists()


def test_missing_teacher_prompts_and_a_used_out_fail_before_training(tmp_path, capsys):
    run = ["--config", "debug", "--run-dir", str(tmp_path / "r")]
    assert main(["distill", str(tmp_path / "none"), str(tmp_path / "o"), *run]) == 2
    assert "is not a pipeline folder" in capsys.readouterr().err
    bad = ["--set", f"data.prompts={tmp_path / 'none.txt'}"]
    assert main(["distill", "tiny", str(tmp_path / "o"), *run, *bad]) == 2
    assert "data.prompts=" in capsys.readouterr().err
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    assert main(["distill", "tiny", str(tmp_path / "used"), *run]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert not (tmp_path / "r" / "checkpoints").exists() and not (tmp_path / "o").exists()
