"""Experiment (c)'s engine part: a run that trains its LM (jointly, or from scratch) with the denoiser."""

import json

import pytest
import torch

from lens.cli import main
from lens.errors import LensError
from lens.export import load_run, load_trained_text
from lens.source.world import write_synthetic_shards
from lens.train.encoders import build_text
from lens.train.loop import train
from lens.train.presets import load_config

FAST = ["log.eval_every=4", "log.sample_every=0", "log.tensorboard=false", "checkpoint.interval=2"]


def _lm_vector(lm) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in lm.parameters()])


def _run(tmp_path, name, *extra, steps=4):
    cfg = load_config("debug", [*FAST, f"train.steps={steps}", f"run_dir={tmp_path / name}", *extra])
    return train(cfg), tmp_path / name


@pytest.mark.parametrize("mode", ["joint", "scratch"])
def test_the_lm_trains_is_checkpointed_and_exported(tmp_path, mode):
    cfg = load_config("debug")
    pretrained = _lm_vector(build_text("tiny", cfg.model, torch.float32)[0])
    seed = "train.seed=1"  # the tiny "pretrained" LM is itself seed-0 random: re-initialise differently
    summary, run = _run(tmp_path, mode, f"encoders.text_training={mode}", seed)
    assert summary["step"] == 4 and all(torch.isfinite(torch.tensor(summary["losses"])))
    assert summary["evals"][4]["eval/val_loss"] > 0
    lm2, _ = load_trained_text(run, 2)
    lm4, _ = load_trained_text(run, 4)
    assert not torch.equal(_lm_vector(lm2), _lm_vector(lm4))  # it learns
    gap = (_lm_vector(lm4) - pretrained).abs().max()
    assert (gap < 0.05) if mode == "joint" else (gap > 0.05)  # fine-tuned vs re-initialised

    out = tmp_path / "pipe"
    assert main(["export", str(run), str(out), "--weights", "model"]) == 0
    info = json.loads((out / "lens_training.json").read_text())
    assert info["text_training"] == mode
    from lens.pipeline import LensPipeline

    pipe = LensPipeline.from_pretrained(str(out))
    assert torch.equal(_lm_vector(pipe.text_encoder), _lm_vector(lm4))
    _, model, _, _ = load_run(run, "model", 4)
    assert torch.equal(_lm_vector(pipe.transformer), _lm_vector(model))


def test_resume_restores_the_lm_and_its_optimiser_state(tmp_path):
    mode = ["encoders.text_training=scratch"]
    reference, ref = _run(tmp_path, "ref", *mode)
    _run(tmp_path, "split", *mode, steps=2)
    resumed = train(
        load_config("debug", [*FAST, "train.steps=4", f"run_dir={tmp_path / 'split'}", *mode]), resume=True
    )
    assert resumed["losses"] == reference["losses"][2:]  # bitwise: fp32 on CPU
    assert torch.equal(
        _lm_vector(load_trained_text(ref, 4)[0]), _lm_vector(load_trained_text(tmp_path / "split", 4)[0])
    )


def test_frozen_runs_are_unchanged_and_feature_shards_feed_a_trained_lm(tmp_path):
    src = tmp_path / "images"
    write_synthetic_shards(src, samples=8, shards=1, seed=3)
    feats = tmp_path / "features"
    assert main(["prepare", str(src), str(feats), "--config", "debug"]) == 0
    frozen, run = _run(tmp_path, "frozen", f"data.shards={feats}", steps=2)
    assert load_trained_text(run, 2) is None
    joint, run = _run(tmp_path, "joint", f"data.shards={feats}", "encoders.text_training=joint", steps=2)
    assert joint["losses"][0] != frozen["losses"][0] or joint["losses"][1] != frozen["losses"][1]
    pretrained = _lm_vector(build_text("tiny", load_config("debug").model, torch.float32)[0])
    assert not torch.equal(_lm_vector(load_trained_text(run, 2)[0]), pretrained)  # captions reached the LM
    assert main(["eval", "text-gain", str(run), "--samples", "2"]) == 0


def test_a_trained_lm_needs_the_caption_text_of_feature_samples():
    from lens.resolution import Bucket
    from lens.train.batches import encode_microbatch
    from lens.train.encoders import FrozenEncoders
    from lens.train.samples import Microbatch, Sample

    encoders = FrozenEncoders(load_config("debug"), torch.device("cpu"), vae=False, text=True)
    encoders.train_text(scratch=False, seed=0)
    sample = Sample(
        key="k0", ref=(0, "k0", 0), bucket=Bucket(64, 64, 1), latent=torch.zeros(128, 4, 4),
        text=torch.zeros(3, 2, 24), caption=None,
    )  # fmt: skip
    with pytest.raises(LensError, match="k0: a run that trains its text encoder needs the caption text"):
        encode_microbatch(Microbatch([sample], packed=False), encoders, torch.device("cpu"))


def test_a_trained_lm_exports_under_the_released_name(tmp_path):
    from lens.pipeline import LensPipeline
    from lens.testing import TINY_LM_WIDTH, tiny_random_pipeline

    source = tmp_path / "frozen"
    tiny_random_pipeline().save_pretrained(str(source), safe_serialization=True)
    index_file = source / "model_index.json"
    index = json.loads(index_file.read_text())  # as frozen folders before the fix named it
    index_file.write_text(json.dumps(index | {"text_encoder": ["transformers", "GptOssForCausalLM"]}))
    extra = [f"encoders.source={source}", f"model.enc_hidden_dim={TINY_LM_WIDTH}"]
    _, run = _run(tmp_path, "joint", *extra, "encoders.text_training=joint", steps=2)
    out = tmp_path / "pipe"
    assert main(["export", str(run), str(out)]) == 0
    index = json.loads((out / "model_index.json").read_text())
    assert index["text_encoder"] == ["transformers", "LensGptOssEncoder"]
    pipe = LensPipeline.from_pretrained(str(out))
    assert type(pipe.text_encoder).__name__ == "LensGptOssEncoder"
    assert torch.equal(_lm_vector(pipe.text_encoder), _lm_vector(load_trained_text(run, 2)[0]))
