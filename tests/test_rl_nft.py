"""`lens rl` without a model: the DiffusionNFT loss against a hand computation, the group
normalisation of rewards, prompt files, the step plan, and config errors as one line."""

import pytest
import torch

from lens.cli import main
from lens.errors import LensError
from lens.rl.config import load_rl_config, training_view
from lens.rl.nft import nft_loss, optimality
from lens.rl.rollout import plan_groups
from lens.train.posttrain import read_prompts


# ---------------------------------------------------------------------- the loss
def _tiny_velocities():
    # (B=2, N=1, C=2)
    v_theta = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]]])
    v_old = torch.tensor([[[0.0, 0.0]], [[1.0, 1.0]]])
    v_ref = torch.tensor([[[0.0, 1.0]], [[0.0, 0.0]]])
    target = torch.tensor([[[1.0, 1.0]], [[0.0, 0.0]]])
    return v_theta, v_old, v_ref, target


def test_nft_loss_matches_a_hand_computation():
    v_theta, v_old, v_ref, target = _tiny_velocities()
    out = nft_loss(v_theta, v_old, v_ref, target, torch.tensor([1.0, 0.25]), beta=0.5, kl_weight=0.1)
    # sample 0: v+ = (0.5, 0), v- = (-0.5, 0); ||v+ - v||^2 = (0.25 + 1) / 2, ||v- - v||^2 = (2.25 + 1) / 2,
    #   ||v_theta - v_ref||^2 = (1 + 1) / 2 -> 1 * 0.625 + 0 * 1.625 + 0.1 * 1
    # sample 1: v+ = (0.5, 1.5), v- = (1.5, 0.5): both 1.25; KL (0 + 4) / 2 -> 0.25 * 1.25 + 0.75 * 1.25 + 0.1 * 2
    assert torch.allclose(out.loss, torch.tensor([0.725, 1.45]))
    assert torch.allclose(out.kl, torch.tensor([1.0, 2.0]))


def test_beta_one_is_the_papers_pair_and_theta_at_old_gives_weighted_flow_matching():
    v_theta, v_old, v_ref, target = _tiny_velocities()
    r = torch.tensor([0.9, 0.2])
    out = nft_loss(v_theta, v_old, v_ref, target, r, beta=1.0)
    pos = (v_theta - target).pow(2).flatten(1).mean(1)  # v+ = v_theta
    neg = (2 * v_old - v_theta - target).pow(2).flatten(1).mean(1)  # v- = 2 v_old - v_theta
    assert torch.allclose(out.loss, r * pos + (1 - r) * neg)

    # at theta = old the gradient is beta (2r - 1) times flow matching's, 2 (v_old - v) / (N C)
    theta = v_old.clone().requires_grad_(True)
    nft_loss(theta, v_old, v_ref, target, r, beta=0.5).loss.sum().backward()
    expected = 0.5 * (2 * r - 1)[:, None, None] * 2 * (v_old - target) / 2
    assert torch.allclose(theta.grad, expected)


# ---------------------------------------------------------------------- group normalisation
def test_optimality_is_the_clipped_group_advantage_over_the_global_std():
    # global population std of (0.6, 0.4, 0, 0) is sqrt(0.0675); the first group's mean is 0.5
    r = optimality(torch.tensor([[0.6, 0.4], [0.0, 0.0]]))
    half = 0.5 * 0.1 / 0.0675**0.5
    assert torch.allclose(r, torch.tensor([[0.5 + half, 0.5 - half], [0.5, 0.5]]), atol=1e-6)
    # an image Z or more above its group's mean saturates at 1, one below at 0
    r = optimality(torch.tensor([[1.0, 0.0, 0.5, 0.5], [0.2, 0.2, 0.2, 0.2]]))
    assert r.tolist() == [[1.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]]
    assert optimality(torch.full((3, 4), 0.7)).eq(0.5).all()  # all equal: Z at its floor, r = 1/2


def test_optimality_needs_groups():
    with pytest.raises(ValueError, match="group >= 2"):
        optimality(torch.tensor([[0.1], [0.2]]))


# ---------------------------------------------------------------------- prompts and the step plan
def test_prompt_files(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("a red circle\n\n# a comment\n  two blue squares  \n")
    assert [(p.text, p.metadata) for p in read_prompts(str(txt))] == [
        ("a red circle", None),
        ("two blue squares", None),
    ]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a cat", "rubrics": {"cat": "a cat is visible"}}\n\n')
    (prompt,) = read_prompts(str(jsonl))
    assert prompt.text == "a cat" and prompt.metadata["rubrics"] == {"cat": "a cat is visible"}
    nano = read_prompts("nano-eval")
    assert len(nano) > 100 and all(p.metadata["prompt"] == p.text for p in nano)

    jsonl.write_text('{"prompt": "a cat"}\n{"text": "no prompt"}\n')
    with pytest.raises(LensError, match=r"p.jsonl:2 has no \"prompt\""):
        read_prompts(str(jsonl))
    with pytest.raises(LensError, match="no such file"):
        read_prompts(str(tmp_path / "missing.txt"))


def test_plan_uses_every_prompt_before_repeating_and_is_seeded():
    cfg = load_rl_config("debug", ["rollout.prompts_per_step=5", "rollout.sizes=64x64;48x80;80x48"])
    prompts = read_prompts("nano-eval")[:3]
    groups = plan_groups(prompts, cfg, step=7)
    texts = [g.prompt.text for g in groups]
    assert len(groups) == 5 and sorted(texts[:3]) == sorted(p.text for p in prompts)
    cfg.rollout.prompts_per_step = 30
    assert {g.size for g in plan_groups(prompts, cfg, step=7)} == {(64, 64), (48, 80), (80, 48)}
    cfg.rollout.prompts_per_step = 5
    assert [(g.prompt.text, g.size) for g in plan_groups(prompts, cfg, step=7)] == [
        (g.prompt.text, g.size) for g in groups
    ]
    assert [g.prompt.text for g in plan_groups(prompts, cfg, step=8)] != texts


# ---------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "override, message",
    [
        ("rollout.group_size=1", "rollout.group_size must be >= 2"),
        ("nft.beta=0", "nft.beta must be a positive number"),
        ("nft.old_decay=1", "nft.old_decay must be in [0, 1)"),
        ("rollout.sizes=65x64", "multiple of 16"),
        ("rollout.nope=1", "unknown config field 'rollout.nope'"),
        ("run.precision=fp8", "run.precision must be one of bf16, fp32"),
        ("policy.lora_rank=0", "policy.lora_rank must be >= 1"),
    ],
)
def test_bad_config_is_one_line(override, message, tmp_path, capsys):
    rc = main(["rl", "debug", "--reward", "nano-eval", "--run-dir", str(tmp_path / "r"), "--set", override])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and err.startswith("lens rl: error:") and message in err
    assert not (tmp_path / "r").exists()  # nothing written


def test_missing_reward_and_prompt_file_fail_before_anything_is_written(tmp_path, capsys):
    assert main(["rl", "debug", "--run-dir", str(tmp_path / "r")]) == 2
    assert "no reward" in capsys.readouterr().err
    bad = ["--set", f"rollout.prompts={tmp_path / 'none.txt'}"]
    assert main(["rl", "debug", "--reward", "nano-eval", "--run-dir", str(tmp_path / "r"), *bad]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_presets_and_the_training_view(tmp_path):
    lens = load_rl_config("lens", ["policy.base=models/lens", "rollout.prompts=p.txt"])
    assert (lens.policy.lora_rank, lens.policy.lora_alpha, lens.run.steps) == (64, 128.0, 180)
    assert (lens.rollout.prompts_per_step, lens.rollout.group_size, lens.optim.lr) == (48, 24, 3e-4)
    assert lens.rollout.sizes[0] == "1024x1024" and len(lens.sizes()) == 9  # the nine 1024^2-area buckets
    assert (lens.nft.beta, lens.nft.kl_weight, lens.optim.weight_decay) == (1.0, 1e-4, 1e-4)

    path = tmp_path / "rl.json"
    lens.save(path)
    assert load_rl_config(str(path)).to_dict() == lens.to_dict()  # a run's rl.json is a CONFIG

    base = {"num_layers": 2, "axes_dims_rope": [4, 6, 6], "in_channels": 128, "_class_name": "x"}
    view = training_view(lens, tmp_path / "base", base)
    assert view.model.num_layers == 2 and view.model.axes_dims_rope == (4, 6, 6)
    assert view.model.init_from == view.encoders.source == str(tmp_path / "base")
    assert view.model.lora_kwargs() == dict(rank=64, alpha=128.0, dropout=0.0, targets=("attention", "mlp"))
    assert view.data.world_object_scale == 1.0  # no base folder there: the world's own sizes
    (tmp_path / "nano").mkdir()
    (tmp_path / "nano" / "model_index.json").write_text('{"world_object_scale": 1.8}')
    assert training_view(lens, tmp_path / "nano", base).data.world_object_scale == 1.8  # exported as it came
