"""`lens rl` on a tiny random pipeline: a simple reward rises, a resumed run ends bitwise where a
straight one does, and the CLI run is logged, sampled, checkpointed and exported (merged or adapter)."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lens.cli import main
from lens.errors import LensError
from lens.export import load_run
from lens.pipeline import LensPipeline
from lens.rl import load_rl_config, rl
from lens.rl.loop import RLTrainer
from lens.train.metrics import read_rows


def red_share(images, prompts, metadata):
    """Mean redness: the share of pixels whose red channel exceeds both green and blue."""
    arrays = [np.asarray(im, np.int16) for im in images]
    return [float((a[..., 0] > a[..., 1:].max(-1)).mean()) for a in arrays]


QUIET = ["log.sample_every=0", "log.tensorboard=false"]


def test_redness_rises(tmp_path):
    # 30 steps of 4 prompts x 8 images (64x64, 2 Euler steps): about 15 s on one CPU thread. The tiny
    # random VAE decodes any latent to about a fifth red pixels (0.22 +- 0.02 per image); a shift of
    # the denoiser's velocity that every image shares is enough to raise it.
    cfg = load_rl_config(
        "debug",
        QUIET + [f"run_dir={tmp_path / 'run'}", "run.steps=30", "checkpoint.interval=100",
                 "rollout.prompts_per_step=4", "rollout.group_size=8", "rollout.batch=32",
                 "rollout.sizes=64x64", "rollout.steps=2", "optim.lr=5e-2"],
    )  # fmt: skip
    history = rl(cfg, reward=red_share)["history"]
    rewards = [h["reward_mean"] for h in history]
    first, last = np.mean(rewards[:3]), np.mean(rewards[-5:])
    # a step's mean over 32 images moves by about 0.003 from noise alone; the run gains about 0.025
    assert last - first > 0.012, rewards
    assert all(h["kl"] >= 0 for h in history) and history[-1]["kl"] > history[0]["kl"]


def _lora(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if ".lora_" in n}


def test_resume_is_exact(tmp_path):
    """4 steps straight == 2 steps, a new process state, 2 more: bitwise-equal adapter and old policy
    (an old policy that lags theta, and LoRA dropout that draws from the restored RNG)."""
    common = QUIET + ["nft.old_decay=0.5", "nft.old_every=2", "policy.lora_dropout=0.1"]

    def trainer(name: str, steps: int, resume: bool = False) -> RLTrainer:
        cfg = load_rl_config("debug", common + [f"run_dir={tmp_path / name}", f"run.steps={steps}"])
        return RLTrainer(cfg, reward=red_share, resume=resume)

    straight = trainer("straight", 4)
    rows_straight = straight.run()["history"]
    trainer("halves", 2).run()
    torch.manual_seed(1234)  # nothing of the first half's global RNG state survives but the checkpoint's
    resumed = trainer("halves", 4, resume=True)
    assert resumed.step == 2
    rows_resumed = resumed.run()["history"]

    assert rows_resumed == rows_straight[2:]  # rewards, losses, KL, grad norms: all bitwise
    a, b = _lora(straight.model), _lora(resumed.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(x, y) for x, y in zip(straight.old.shadow, resumed.old.shadow))
    assert not all(torch.equal(x, p) for x, p in zip(resumed.old.shadow, resumed.old.params))  # it lags
    steps = [r["step"] for r in read_rows(tmp_path / "halves" / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4]


def test_resume_needs_the_flag(tmp_path):
    cfg = load_rl_config("debug", QUIET + [f"run_dir={tmp_path}", "run.steps=1"])
    rl(cfg, reward=red_share)
    with pytest.raises(LensError, match="already has checkpoints: pass --resume"):
        rl(cfg, reward=red_share)


def test_cli_run_logs_samples_checkpoints_and_exports(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["rl", "debug", "--reward", f"{__name__}:red_share", "--run-dir", str(run)]
    assert main(args + ["--set", "log.tensorboard=false"]) == 0
    assert "done: step 6" in capsys.readouterr().out

    rows = read_rows(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(
        {"loss", "reward_mean", "reward_std", "reward_group_std", "kl", "grad_norm"} <= r.keys() for r in rows
    )
    assert all(0 <= r["reward_group_std"] <= r["reward_std"] + 1e-9 for r in rows)  # within <= overall
    assert (run / "samples" / "step_00000006.png").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000003", "step_00000006"]
    assert json.loads((run / "rl.json").read_text())["reward"] == f"{__name__}:red_share"

    # the training view makes it a LoRA run for lens export; the weights are the old policy (= theta here)
    cfg, model, step, used = load_run(run)
    assert (step, used, cfg.model.lora_rank) == (6, "ema", 4)
    theta = _lora(load_run(run, weights="model")[1])
    assert any(v.abs().sum() > 0 for k, v in theta.items() if "lora_B" in k)  # the adapter moved
    assert all(torch.equal(theta[k], v) for k, v in _lora(model).items())

    assert main(["export", str(run), str(tmp_path / "adapter"), "--lora", "adapter"]) == 0
    saved = load_file(tmp_path / "adapter" / "pytorch_lora_weights.safetensors")
    assert len(saved) == len(theta)
    assert main(["export", str(run), str(tmp_path / "merged")]) == 0

    base = LensPipeline.from_pretrained(str(run / "base"))
    merged = LensPipeline.from_pretrained(str(tmp_path / "merged"))
    base.load_lora_weights(str(tmp_path / "adapter"))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    kw = dict(num_inference_steps=2, guidance_scale=1.0, output_type="latent")
    with_adapter = base("a red circle", generator=g(), **kw).images
    assert torch.allclose(merged("a red circle", generator=g(), **kw).images, with_adapter, atol=1e-4)
    base.unload_lora_weights()
    assert not torch.allclose(base("a red circle", generator=g(), **kw).images, with_adapter, atol=1e-4)


def test_a_run_on_a_relative_base_exports_from_anywhere_and_a_failed_export_leaves_nothing(
    tmp_path, monkeypatch
):
    from lens.testing import tiny_random_pipeline

    work = tmp_path / "work"
    work.mkdir()
    tiny_random_pipeline(seed=1).save_pretrained(str(work / "base"))
    monkeypatch.chdir(work)
    cfg = load_rl_config(
        "debug",
        ["run_dir=run", "policy.base=base", "run.steps=1", "log.sample_every=0", "log.tensorboard=false"],
    )
    rl(cfg, reward=red_share)
    monkeypatch.chdir(tmp_path)  # the saved config names the base by its full path
    saved = json.loads((work / "run" / "config.json").read_text())
    assert saved["model"]["init_from"] == str((work / "base").resolve())

    import lens.export

    def broken(*args, **kwargs):
        raise OSError("disk full")

    out = tmp_path / "models" / "rl"
    with monkeypatch.context() as m:
        m.setattr(lens.export, "write_pipeline", broken)
        with pytest.raises(OSError, match="disk full"):
            main(["export", str(work / "run"), str(out)])
    assert not out.exists() and list((tmp_path / "models").iterdir()) == []  # no partial folder
    assert main(["export", str(work / "run"), str(out)]) == 0
    assert (out / "lora" / "pytorch_lora_weights.safetensors").is_file() and (
        out / "model_index.json"
    ).is_file()
