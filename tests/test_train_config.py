"""Training configs: presets carry the paper's numbers; --set overrides are typed and fail clearly."""

import json

import pytest

from lens.errors import LensError
from lens.train.buckets import parse_buckets
from lens.train.config import Config, apply_overrides
from lens.train.presets import PRESETS, load_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_resolves(name):
    cfg = load_config(name)
    assert cfg.preset == name
    assert parse_buckets(cfg.data.buckets, cfg.data.batch_size)


def test_lens_presets_hold_the_paper_recipe():
    s1, s2 = load_config("lens-stage1"), load_config("lens-stage2")
    assert (s1.optim.lr, s2.optim.lr) == (2e-4, 1e-4)
    assert s1.optim.betas == (0.9, 0.999) and s1.optim.grad_clip == 1.0 and s1.train.precision == "bf16"
    assert s1.train.activation_checkpointing and s1.train.steps == s2.train.steps == 400_000
    assert [(b.height, b.width, b.batch_size) for b in parse_buckets(s1.data.buckets)] == [(512, 512, 24)]
    assert s1.objective.logit_mean == 1.06 and s2.objective.logit_mean is None  # stage 2: 1.0 -> 1.3 rule
    buckets = parse_buckets(s2.data.buckets)
    assert len(buckets) == 27
    assert {(round(b.tokens / 1024), b.batch_size) for b in buckets} == {(1, 24), (2, 10), (4, 6)}
    assert s2.model.num_layers == 48 and s2.model.enc_hidden_dim == 2880


def test_lens_1_2b_has_the_ablation_size():
    import torch

    from lens.model.transformer import LensTransformer2DModel

    with torch.device("meta"):
        model = LensTransformer2DModel(**load_config("lens-1.2b").model.model_kwargs())
    assert 1.15e9 < sum(p.numel() for p in model.parameters()) < 1.25e9


def test_overrides_are_typed():
    cfg = load_config(
        "debug",
        [
            "optim.lr=1e-4",
            "model.axes_dims_rope=4,4,8",
            "objective.logit_mean=none",
            "objective.logit_std=1",
            "log.sample_prompts=a cat;a dog",
            "data.packing=yes",
            "run_dir=/tmp/x",
        ],
    )
    assert cfg.optim.lr == 1e-4 and cfg.model.axes_dims_rope == (4, 4, 8)
    assert cfg.objective.logit_mean is None and cfg.objective.logit_std == 1.0
    assert (
        cfg.log.sample_prompts == ("a cat", "a dog") and cfg.data.packing is True and cfg.run_dir == "/tmp/x"
    )


@pytest.mark.parametrize(
    "item, words",
    [
        ("optim.lr=fast", "optim.lr expects a number"),
        ("optim.learning_rate=1", "unknown config field"),
        ("optimizer.lr=1", "unknown config section"),
        ("train.steps=1.5", "expects an integer"),
        ("data.caption=long", "data.caption must be one of dense, brief, mixed"),
        ("data.packing=maybe", "expects true/false"),
        ("optim.lr", "must look like section.field=value"),
        ("train.steps=0", "train.steps must be >= 1"),
    ],
)
def test_bad_overrides_say_what_to_do(item, words):
    with pytest.raises(LensError, match=words):
        load_config("debug", [item])


def test_config_files_round_trip_and_extend_presets(tmp_path):
    cfg = apply_overrides(load_config("nano"), ["optim.lr=5e-4", "data.buckets=64x64:8"])
    cfg.save(tmp_path / "config.json")
    again = load_config(str(tmp_path / "config.json"))
    assert again == cfg and isinstance(again, Config)
    (tmp_path / "c.toml").write_text('preset = "debug"\n[optim]\nlr = 0.01\n[data]\ncaption = "mixed"\n')
    toml = load_config(str(tmp_path / "c.toml"))
    assert toml.optim.lr == 0.01 and toml.data.caption == "mixed" and toml.model.num_layers == 2
    (tmp_path / "bad.json").write_text(json.dumps({"optim": {"lr": "x"}}))
    with pytest.raises(LensError, match="optim.lr"):
        load_config(str(tmp_path / "bad.json"))
    with pytest.raises(LensError, match="neither a preset"):
        load_config("no-such-preset")


@pytest.mark.parametrize(
    "spec, words",
    [
        ("500x500:4", "height=500 is not a multiple of 16"),
        ("64x64:four", "not HxW:batch"),
        ("512x512", "no batch size"),
        ("big", "not HxW:batch"),
        ("64x64:2,64x64:3", "twice"),
    ],
)
def test_bucket_specs_are_checked(spec, words):
    with pytest.raises(LensError, match=words):
        parse_buckets(spec)
    assert [b.batch_size for b in parse_buckets("lens-512", batch_size=3)] == [3] * 9


def test_config_does_not_import_presets():
    """presets -> config, never back: load_config lives with the presets it resolves."""
    import ast
    from pathlib import Path

    import lens.train.config as config

    tree = ast.parse(Path(config.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.startswith("lens.train.presets") for m in imported)
    assert not hasattr(config, "load_config")
