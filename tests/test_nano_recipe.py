"""The pieces of `lens nano build` and its experiments: world sets over jobs, the sweep, the tables."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from lens.errors import LensError
from lens.eval import nano_prompts
from lens.eval.nano_eval import evaluate
from lens.eval.sweep import format_rows, settings, sweep
from lens.nano.recipe import write_world
from lens.research.captions import format_table, table
from lens.testing import tiny_random_pipeline
from lens.world import read_shards, reason, render_scene, write_shards

PROMPTS = nano_prompts()[::13]  # 12 prompts, every tag


def test_a_set_split_over_start_ranges_equals_one_run(tmp_path):
    sizes = [(64, 64), (48, 80)]
    write_shards(str(tmp_path / "one"), 5, seed=4, sizes=sizes)
    write_shards(str(tmp_path / "a"), 2, seed=4, sizes=sizes)
    write_shards(str(tmp_path / "b"), 3, seed=4, sizes=sizes, start=2)
    one = list(read_shards(str(tmp_path / "one")))
    split = list(read_shards(str(tmp_path / "a"))) + list(read_shards(str(tmp_path / "b")))
    assert [s.key for s in one] == [s.key for s in split] == [f"{i:08d}" for i in range(5)]
    assert [s.caption for s in one] == [s.caption for s in split]
    assert [s.image.size for s in one] == [(64, 64), (80, 48), (64, 64), (80, 48), (64, 64)]
    assert all(a.image.tobytes() == b.image.tobytes() for a, b in zip(one, split))
    with pytest.raises(LensError, match="start"):
        write_shards(str(tmp_path / "c"), 2, start=-1)


def test_world_stage_writes_once_and_rewrites_a_changed_set(tmp_path):
    paths = write_world(tmp_path / "world", 12, seed=3, jobs=2)
    assert len(paths) == 2 and sum(1 for p in paths for _ in read_shards(p)) == 12
    stamp = [p.stat().st_mtime_ns for p in (tmp_path / "world").glob("part-*/*.tar")]
    assert write_world(tmp_path / "world", 12, seed=3, jobs=2) == paths  # done: not written again
    assert [p.stat().st_mtime_ns for p in (tmp_path / "world").glob("part-*/*.tar")] == stamp
    assert sum(1 for p in write_world(tmp_path / "world", 7, seed=3, jobs=3) for _ in read_shards(p)) == 7


def test_scoring_processes_give_the_same_scores():
    def perfect_but_blank_counting(texts, seed):
        images = [render_scene(reason(t, seed)[1], 64, 64) for t in texts]
        return [
            im.point(lambda v: 255) if "three" in t or "four" in t else im for im, t in zip(images, texts)
        ]

    serial = evaluate(perfect_but_blank_counting, PROMPTS, n_samples=2, batch_size=5)
    parallel = evaluate(perfect_but_blank_counting, PROMPTS, n_samples=2, batch_size=5, workers=2)
    assert serial == parallel and 0.2 < serial["overall"] < 1.0


def test_sweep_scores_every_setting_of_a_pipeline(tmp_path):
    pipe = tiny_random_pipeline()
    pipe.set_progress_bar_config(disable=True)
    grid = settings([1.0, 2.0], [(32, 48)], [True, False])
    rows = sweep(pipe, grid, steps=2, n_samples=1, prompts=PROMPTS[:3], out_dir=str(tmp_path))
    assert [(r["guidance"], r["reasoner"], r["size"]) for r in rows] == [
        (1.0, True, "32x48"), (2.0, True, "32x48"), (1.0, False, "32x48"), (2.0, False, "32x48"),
    ]  # fmt: skip
    assert all(0.0 <= r["overall"] <= 1.0 for r in rows)
    text = format_rows(rows)
    assert text.count("\n") == 5 and "reasoner, CFG 2, 32x48" in text
    assert len(list(tmp_path.glob("*/00000/samples/0000.png"))) == 4
    again = sweep(pipe, grid[:1], steps=2, n_samples=1, prompts=PROMPTS[:3])  # CPU seeds: same images
    assert {k: v for k, v in again[0].items() if k != "seconds"} == {
        k: v for k, v in rows[0].items() if k != "seconds"
    }


def test_caption_experiment_table_reads_the_arms_metrics(tmp_path):
    scores = {"dense": {0: (0.1, 0.1), 100: (0.2, 0.3)}, "brief": {0: (0.2, 0.2), 100: (0.3, 0.4)}}
    for policy, by_step in scores.items():
        (tmp_path / policy).mkdir()
        lines = [{"step": 1, "loss": 1.0}]
        lines += [
            {"step": s, "eval/nano/overall": short, "eval/nano-reasoner/overall": dense}
            for s, (short, dense) in by_step.items()
        ]
        (tmp_path / policy / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    rows = table(tmp_path)
    assert [r["step"] for r in rows] == [0, 100]
    assert rows[1] == {
        "step": 100, "dense/short": 0.2, "dense/reasoner": 0.3, "brief/short": 0.3, "brief/reasoner": 0.4,
    }  # fmt: skip
    text = format_table(rows)
    assert "| 100 | 0.200 | 0.300 | 0.300 | 0.400 | - | - |" in text


def test_build_runs_every_stage_and_resumes(tmp_path):
    from lens.inference import load_pipeline
    from lens.nano.build import build_components, small_plan
    from lens.nano.recipe import Recipe, build

    components = tmp_path / "components"
    build_components(components, seed=0, plan=small_plan(), log=lambda m: None)
    tiny = ["model.num_layers=1", "model.num_attention_heads=1", "data.batch_size=2", "log.eval_every=0",
            "log.sample_every=0", "log.tensorboard=false", "train.threads=1"]  # fmt: skip
    recipe = Recipe(components=str(components), samples=12, jobs=2, overrides=[*tiny, "train.steps=2"])
    result = build(tmp_path / "nano", replace(recipe, evaluate=False))
    index = json.loads((tmp_path / "nano" / "pipeline" / "model_index.json").read_text())
    assert (index["default_height"], index["default_steps"]) == (64, 20)  # the components' native size
    assert json.loads((tmp_path / "nano" / "pipeline" / "lens_training.json").read_text())["step"] == 2
    assert result["size_mb"] > 0 and not result["rows"]
    prepared = json.loads((tmp_path / "nano" / "features" / "prepare.json").read_text())
    assert prepared["rank0"]["samples"] + prepared["rank1"]["samples"] == 12  # no rank's update lost
    pipe = load_pipeline(result["pipeline"])
    pipe.set_progress_bar_config(disable=True)
    assert pipe("a photo of a red circle", num_inference_steps=2).images[0].size == (64, 64)
    # a second call trains on from the last checkpoint; world and features are not redone
    stamp = (tmp_path / "nano" / "features" / "done.json").stat().st_mtime_ns
    build(tmp_path / "nano", replace(recipe, overrides=[*tiny, "train.steps=3"], evaluate=False))
    assert json.loads((tmp_path / "nano" / "pipeline" / "lens_training.json").read_text())["step"] == 3
    assert (tmp_path / "nano" / "features" / "done.json").stat().st_mtime_ns == stamp


def test_caption_experiment_trains_arms_in_turn_and_scores_held_out_losses(tmp_path, capsys):
    from lens.cli import main

    write_shards(str(tmp_path / "train"), 8, seed=1)
    write_shards(str(tmp_path / "held"), 4, seed=2)
    tiny = [
        "model.num_layers=1", "model.num_attention_heads=2", "model.attention_head_dim=16",
        "model.enc_hidden_dim=24", "model.axes_dims_rope=[4,6,6]", "model.selected_layer_index=[0,1]",
        "encoders.source=tiny", f"data.shards={tmp_path / 'train'}", "data.buckets=64x64:2",
        "data.workers=1", "log.tensorboard=false", "train.threads=1", "train.precision=fp32",
        # centred (whitened) text features average to ~0 under the near-uniform attention of a 2-step
        # model, so the two prompt styles' losses would agree to 4 decimals; the default init keeps
        # the test about the experiment's plumbing
        "model.txt_in_init=default",
    ]  # fmt: skip
    args = ["nano", "captions-experiment", str(tmp_path / "exp"), "--steps", "2", "--eval-every", "2"]
    args += ["--policies", "dense", "brief", "--sequential", "--no-nano-eval"]
    args += ["--loss-shards", str(tmp_path / "held"), "--loss-samples", "2"]
    assert main(args + [item for o in tiny for item in ("--set", o)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [
        [c.strip() for c in line.split("|")[1:-1]]
        for line in lines
        if line.startswith("| dense") or line.startswith("| brief")
    ]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("dense", "dense", "2"), ("dense", "brief", "2"), ("brief", "dense", "2"), ("brief", "brief", "2"),
    ]  # fmt: skip
    assert rows[0][4] == rows[1][4]  # the null condition does not depend on the prompt
    assert rows[0][3] != rows[1][3]
    metrics = (tmp_path / "exp" / "brief" / "metrics.jsonl").read_text()
    assert "eval/text_gain" in metrics and "eval/nano" not in metrics


def test_world_sizes_set_the_training_buckets(tmp_path, capsys):
    from lens.cli import main
    from lens.nano.recipe import TRAIN_SIZES, size_buckets
    from lens.train.buckets import parse_buckets

    assert size_buckets(TRAIN_SIZES) == []  # the preset's own bucket
    (item,) = size_buckets([(128, 128), (128, 128), (96, 160), (160, 96)])
    buckets = parse_buckets(item.removeprefix("data.buckets="))
    assert [(b.height, b.width, b.batch_size) for b in buckets] == [
        (128, 128, 16),
        (96, 160, 16),
        (160, 96, 16),
    ]
    assert main(["nano", "build", str(tmp_path / "x"), "--sizes", "128x100"]) == 2
    assert "multiple of 16" in capsys.readouterr().err and not (tmp_path / "x").exists()
