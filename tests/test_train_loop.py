"""The debug run end to end: it learns, fills its run directory, exports, and survives bad steps."""

import json

import numpy as np
import pytest
import torch

from lens.cli import main
from lens.errors import LensError
from lens.train.loop import train
from lens.train.presets import load_config

FAST = ["log.eval_every=0", "log.sample_every=0", "log.tensorboard=false"]


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("debug") / "run"
    assert main(["train", "debug", "--run-dir", str(run_dir)]) == 0
    return run_dir


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_debug_run_learns_and_fills_its_run_dir(debug_run):
    rows = _rows(debug_run)
    val = {r["step"]: r["eval/val_loss"] for r in rows if "eval/val_loss" in r}
    assert sorted(val) == [0, 20, 40]
    assert val[40] < 0.8 * val[0]  # fixed sigmas and noise: a real drop, not sigma luck
    for r in rows:
        if "eval/val_loss" in r:  # the same samples and noise without their captions
            assert r["eval/text_gain"] == pytest.approx(r["eval/val_loss_null"] - r["eval/val_loss"])
            assert r["eval/val_loss_null"] != r["eval/val_loss"]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 40 and sum(losses[-10:]) < 0.85 * sum(losses[:10])
    assert load_config(str(debug_run / "config.json")).preset == "debug"
    assert sorted(p.name for p in (debug_run / "checkpoints").iterdir()) == ["step_00000020", "step_00000040"]
    assert (debug_run / "samples" / "step_00000040.png").is_file()
    assert list((debug_run / "tb").glob("events.out.tfevents.*"))
    log = (debug_run / "train.log").read_text()
    assert "img/s" in log and "tok/s" in log and "ETA" in log and "mem" in log


def _gain_table(out: str) -> list[list[str]]:
    lines = out.splitlines()
    assert lines[0].startswith("captions:")
    return [[cell.strip() for cell in line.split("|")[2:-1]] for line in lines[3:]]  # drop the run


def test_text_gain_recomputes_the_logged_val_loss_of_a_checkpoint(debug_run, capsys):
    logged = {r["step"]: r for r in _rows(debug_run) if "eval/text_gain" in r}
    assert main(["eval", "text-gain", str(debug_run), "--step", "20", "40"]) == 0
    table = _gain_table(capsys.readouterr().out)
    assert [int(row[0]) for row in table] == [20, 40]
    for row in table:
        step, val, null, gain = int(row[0]), float(row[4]), float(row[5]), float(row[6])
        assert val == pytest.approx(logged[step]["eval/val_loss"], abs=1e-4)
        assert null == pytest.approx(logged[step]["eval/val_loss_null"], abs=1e-4)
        assert gain == pytest.approx(logged[step]["eval/text_gain"], abs=2e-4)


def test_text_gain_of_a_grounded_run_recomputes_its_logged_val_loss(tmp_path):
    # a grounded run's hook encodes its captions with their token places; so must the offline tool
    run = tmp_path / "grounded"
    sets = ["model.text_grounding=true", "train.steps=20", "log.sample_every=0", "log.tensorboard=false"]
    assert main(["train", "debug", "--run-dir", str(run), *[a for kv in sets for a in ("--set", kv)]]) == 0
    logged = {r["step"]: r for r in _rows(run) if "eval/text_gain" in r}[20]
    assert main(["eval", "text-gain", str(run), "--json", str(tmp_path / "rows.json")]) == 0
    (row,) = json.loads((tmp_path / "rows.json").read_text())
    # the same sums recomputed offline: equal to ~1e-7 (without the places: ~6e-5 off)
    assert row["eval/val_loss"] == pytest.approx(logged["eval/val_loss"], rel=1e-7)
    assert row["eval/val_loss_null"] == pytest.approx(logged["eval/val_loss_null"], rel=1e-7)


def test_text_gain_per_stored_size_and_caption(debug_run, capsys, tmp_path):
    # the debug shards hold 96x96 samples, a size its buckets (64x64, 48x80, 80x48) never train
    args = ["eval", "text-gain", str(debug_run), "--samples", "2", "--sizes", "64x64", "96x96"]
    assert main(args) == 0
    dense = _gain_table(capsys.readouterr().out)
    assert [(row[2], row[3]) for row in dense] == [("64x64", "2"), ("96x96", "2")]
    assert main([*args, "--caption", "brief", "--json", str(tmp_path / "brief.json")]) == 0
    brief = _gain_table(capsys.readouterr().out)
    rows = json.loads((tmp_path / "brief.json").read_text())
    assert [(r["run"], r["caption"], r["size"]) for r in rows] == [
        ("run", "brief", "64x64"),
        ("run", "brief", "96x96"),
    ]
    for d, b in zip(dense, brief):
        assert float(b[5]) == pytest.approx(float(d[5]))  # the null condition ignores the caption
        assert float(b[4]) != pytest.approx(float(d[4]), abs=1e-6)
    assert main(["eval", "text-gain", str(debug_run), "--sizes", "128x128"]) == 2
    assert "no readable sample stored at 128x128" in capsys.readouterr().err


def test_export_loads_as_a_pipeline_and_seeds_fine_tuning(debug_run, tmp_path):
    from lens.export import load_run
    from lens.pipeline import LensPipeline
    from lens.train.denoiser import build_model

    out = tmp_path / "pipe"
    assert main(["export", str(debug_run), str(out)]) == 0
    info = json.loads((out / "lens_training.json").read_text())
    assert info["step"] == 40 and info["weights"] == "ema"  # the debug preset keeps an EMA
    pipe = LensPipeline.from_pretrained(str(out))
    image = pipe(
        "a red circle on the left", generator=torch.Generator().manual_seed(0), output_type="np"
    ).images
    assert image.shape == (1, 64, 64, 3)
    _, ema_model, _, _ = load_run(debug_run, "ema")
    _, raw_model, _, _ = load_run(debug_run, "model")
    cfg = load_config("debug", [f"model.init_from={out}"])
    start = build_model(cfg.model).state_dict()
    assert all(torch.equal(v, ema_model.state_dict()[k]) for k, v in start.items())
    assert not all(torch.equal(v, raw_model.state_dict()[k]) for k, v in start.items())
    with pytest.raises(LensError, match="does not match the model config"):
        build_model(load_config("debug", [f"model.init_from={out}", "model.num_layers=3"]).model)
    assert main(["export", str(debug_run), str(out)]) == 2  # refuses to overwrite


def test_export_records_the_worlds_object_scale_for_the_reasoner(debug_run, tmp_path):
    # the nano reasoner lays out scenes for the objects the model drew in training
    import shutil

    from lens.inference import world_object_scale

    run = tmp_path / "run"
    shutil.copytree(debug_run, run)
    saved = json.loads((run / "config.json").read_text())
    saved["data"]["world_object_scale"] = 1.8
    (run / "config.json").write_text(json.dumps(saved))
    assert main(["export", str(run), str(tmp_path / "pipe")]) == 0
    assert json.loads((tmp_path / "pipe" / "model_index.json").read_text())["world_object_scale"] == 1.8
    assert world_object_scale(str(tmp_path / "pipe")) == 1.8
    with pytest.raises(LensError, match="world_object_scale must be in 0.5..2.0"):
        load_config("debug", ["data.world_object_scale=3"])


def test_non_finite_steps_are_skipped_then_stop_the_run(tmp_path):
    cfg = load_config(
        "debug", ["train.steps=5", "fault.nonfinite_at=2", "run_dir=" + str(tmp_path / "a"), *FAST]
    )
    summary = train(cfg)
    assert summary["skipped"] == 1 and summary["step"] == 5
    assert torch.isnan(torch.tensor(summary["losses"][1])) and all(
        torch.isfinite(torch.tensor(summary["losses"][2:]))
    )
    over = [
        "train.steps=8",
        "fault.nonfinite_at=2,3,4",
        "train.max_nonfinite=3",
        "run_dir=" + str(tmp_path / "b"),
    ]
    with pytest.raises(LensError, match="3 steps in a row had a non-finite loss"):
        train(load_config("debug", over + FAST))


def test_cli_reports_bad_configs_in_one_line(tmp_path, capsys):
    assert main(["train", "debug", "--set", "optim.lr=abc"]) == 2
    assert "optim.lr expects a number" in capsys.readouterr().err
    assert main(["train", "nope"]) == 2
    cfg = load_config("debug", ["train.steps=1", "run_dir=" + str(tmp_path / "r"), *FAST])
    train(cfg)
    assert main(["train", "debug", "--run-dir", str(tmp_path / "r")]) == 2
    assert "pass --resume" in capsys.readouterr().err


def test_gradient_accumulation_consumes_micro_batches(tmp_path):
    cfg = load_config("debug", ["train.steps=2", "optim.grad_accum=3", f"run_dir={tmp_path}", *FAST])
    summary = train(cfg)
    assert summary["data"]["batches"] == 6 and summary["step"] == 2


def test_ema_is_a_moving_average_of_the_weights():
    from lens.train.ema import EMA

    layer = torch.nn.Linear(3, 2)
    start = layer.weight.detach().clone()
    ema = EMA(layer, decay=0.9)
    with torch.no_grad():
        layer.weight.add_(1.0)
    ema.update(step=1000)  # past the warm-up: the configured decay
    assert torch.allclose(ema.state_dict()["weight"], start + 0.1)
    # early on the decay warms up, (1 + step) / (10 + step), so the random start fades at once
    assert ema.decay_at(0) == 0.1 and ema.decay_at(10) == 11 / 20 and ema.decay_at(10**6) == 0.9
    with torch.no_grad():
        layer.weight.add_(1.0)
    ema.update(step=0)
    assert torch.allclose(ema.state_dict()["weight"], 0.1 * (start + 0.1) + 0.9 * (start + 2.0))


def test_a_wall_time_budget_stops_with_a_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    cfg = load_config("debug", [*FAST, "train.steps=40", "train.max_minutes=1e-9"])
    cfg.run_dir = str(run_dir)
    assert train(cfg)["step"] == 1  # the first step is past the budget: saved, stopped
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["step_00000001"]
    assert "train.max_minutes=1e-09 reached at step 1" in (run_dir / "train.log").read_text()
    with pytest.raises(LensError, match="max_minutes"):
        load_config("debug", ["train.max_minutes=-1"])


def test_colour_share_and_whitening_are_logged(tmp_path):
    over = [
        f"run_dir={tmp_path / 'r'}", "train.steps=2", "log.eval_every=2", "log.sample_every=0",
        "log.tensorboard=false", "log.evals=val-loss;colour-share",
        "model.txt_in_init=whiten", "model.whiten_samples=16",
    ]  # fmt: skip
    train(load_config("debug", over))
    rows = [r for r in _rows(tmp_path / "r") if "eval/colour_share" in r]
    assert [r["step"] for r in rows] == [0, 2]
    assert all(0.0 <= r["eval/colour_share"] <= 1.0 for r in rows)
    assert "folded text-feature whitening" in (tmp_path / "r" / "train.log").read_text()


def test_gate_hook_scores_what_the_trainer_draws():
    from types import SimpleNamespace

    from lens.train.evals import Gate
    from lens.world import reason, render_scene

    def draw(prompts, seed=0):  # a perfect generator: the world's own image of each prompt
        return np.stack([np.asarray(render_scene(reason(p, seed)[1], 64, 64)) / 255.0 for p in prompts])

    values = Gate(None)(SimpleNamespace(generate_images=draw))
    assert values["eval/gate/colour"] > 0.9 and values["eval/gate/shape"] > 0.9


def test_nano_eval_hook_imports_plainly(monkeypatch):
    """A broken eval stack is an error when the hook is built, not a warning and silently no scores."""
    import sys

    from lens.train.evals import NanoEval

    monkeypatch.setitem(sys.modules, "lens.eval.nano_eval", None)  # what a failed import leaves
    with pytest.raises(ImportError):
        NanoEval(None)
