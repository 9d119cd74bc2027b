"""Crash safety: a run SIGKILLed while writing a checkpoint resumes to the very same losses (bitwise);
damaged checkpoints, torn logs, SIGTERM, a full disk and a read-only run dir end in a resumable run or
a one-line error."""

import builtins
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lens.cli import main
from lens.errors import LensError
from lens.train.checkpoint import latest_checkpoint
from lens.train.loop import train
from lens.train.metrics import read_rows
from lens.train.presets import load_config

# Mixed captions, dropout, a prefetch thread and EMA: every piece of state a resume must restore.
COMMON = [
    "train.steps=8",
    "checkpoint.interval=2",
    "checkpoint.keep=2",
    "data.caption=mixed",
    "data.caption_dropout=0.3",
    "data.prefetch=2",
    "log.eval_every=0",
    "log.sample_every=0",
    "log.tensorboard=false",
]


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_kill_during_checkpoint_then_resume_gives_identical_losses(tmp_path):
    reference = train(load_config("debug", COMMON + [f"run_dir={tmp_path / 'ref'}"]))["losses"]

    run = tmp_path / "killed"
    cmd = [sys.executable, "-c", "import sys; from lens.cli import main; sys.exit(main(sys.argv[1:]))"]
    cmd += ["train", "debug", "--run-dir", str(run)] + [
        a for c in COMMON + ["fault.kill_during_save=6"] for a in ("--set", c)
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (run / "checkpoints" / ".tmp-step_00000006").is_dir()  # written, never committed
    assert latest_checkpoint(run).name == "step_00000004"

    resumed = train(load_config("debug", COMMON + [f"run_dir={run}"]), resume=True)
    assert resumed["step"] == 8 and len(resumed["losses"]) == 4
    assert resumed["losses"] == reference[4:]  # bitwise: fp32 on CPU
    assert _losses(run) == dict(enumerate(reference, start=1))  # the log was rewritten from step 5
    assert not (run / "checkpoints" / ".tmp-step_00000006").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000006", "step_00000008"]


# ---------------------------------------------------------------- faults an operator meets

FOUR = [c for c in COMMON if not c.startswith("train.steps")] + ["train.steps=4"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 4-step run with checkpoints at steps 2 and 4, and its logged losses; tests work on copies."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train(load_config("debug", FOUR + [f"run_dir={run}"]))
    return run, _losses(run)


def _copy(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished[0], run)
    return run


def _damage(checkpoint, how):
    if how == "truncated":  # a copy or a write cut short
        data = next(checkpoint.glob("*.distcp"))
        data.write_bytes(data.read_bytes()[:100])
    else:  # DCP's index of the tensors is gone
        (checkpoint / ".metadata").unlink()


@pytest.mark.parametrize("how", ["truncated", "no_metadata"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(finished, tmp_path, how):
    run = _copy(finished, tmp_path)
    _damage(run / "checkpoints" / "step_00000004", how)
    resumed = train(load_config("debug", FOUR + [f"run_dir={run}"]), resume=True)
    assert resumed["step"] == 4 and resumed["losses"] == [finished[1][3], finished[1][4]]  # from step 2
    log = (run / "train.log").read_text()
    assert "skipping damaged checkpoint" in log and "skipped step_00000004" in log


def test_every_checkpoint_damaged_is_one_error_not_a_fresh_start(finished, tmp_path):
    run = _copy(finished, tmp_path)
    for checkpoint in (run / "checkpoints").iterdir():
        _damage(checkpoint, "truncated")
    with pytest.raises(LensError, match="every checkpoint .* is damaged"):
        train(load_config("debug", FOUR + [f"run_dir={run}"]), resume=True)


def test_resume_with_another_model_config_is_one_line_and_keeps_the_runs_config(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path)
    before = (run / "config.json").read_text()
    args = ["train", "debug", "--run-dir", str(run), "--resume", "--set", "model.num_layers=3"]
    assert main(args + [a for c in FOUR for a in ("--set", c)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("lens train: error:") and "another model config" in last and "config.json" in last
    assert (run / "config.json").read_text() == before  # still what the checkpoints were trained with


def test_a_torn_last_metrics_line_does_not_block_resume(finished, tmp_path):
    run = _copy(finished, tmp_path)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "loss": 1.23')  # the kill struck mid-line
    six = [c for c in FOUR if not c.startswith("train.steps")] + ["train.steps=6", f"run_dir={run}"]
    assert train(load_config("debug", six), resume=True)["step"] == 6
    losses = _losses(run)
    assert sorted(losses) == [1, 2, 3, 4, 5, 6] and losses[4] == finished[1][4]


def test_sigterm_saves_the_current_step_and_exits_cleanly(tmp_path):
    run = tmp_path / "run"
    long = [c for c in COMMON if not c.startswith(("train.steps", "checkpoint.interval"))]
    long += ["train.steps=100000", "checkpoint.interval=100000"]
    cmd = [sys.executable, "-c", "import sys; from lens.cli import main; sys.exit(main(sys.argv[1:]))"]
    cmd += ["train", "debug", "--run-dir", str(run)] + [a for c in long for a in ("--set", c)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        # read_rows: the log is being written while we poll it
        while time.monotonic() < deadline and not (
            (run / "metrics.jsonl").is_file() and len(read_rows(run / "metrics.jsonl")) >= 3
        ):
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    step = max(_losses(run))
    assert f"stopped by SIGTERM at step {step}" in out and "Traceback" not in err
    assert latest_checkpoint(run).name == f"step_{step:08d}"  # nothing since the last interval is lost
    more = [c for c in long if not c.startswith("train.steps")] + [
        f"train.steps={step + 2}",
        f"run_dir={run}",
    ]
    resumed = train(load_config("debug", more), resume=True)
    assert resumed["step"] == step + 2 and len(resumed["losses"]) == 2


def _refuse_writes(monkeypatch, folder, code):
    """Fault injection: opening a file under `folder` for writing fails with errno `code`, as a
    read-only mount does (permission bits would not stop a test that runs as root)."""
    real_open = io.open

    def guarded(file, mode="r", *args, **kwargs):
        writing = isinstance(file, str | os.PathLike) and set(mode) & set("wax+")
        if writing and Path(file).resolve().is_relative_to(folder.resolve()):
            raise OSError(code, os.strerror(code), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)  # logging's FileHandler, json and metrics files
    monkeypatch.setattr(io, "open", guarded)  # pathlib and DCP open through io.open


def test_a_read_only_run_dir_is_one_line_that_says_what_to_do(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    _refuse_writes(monkeypatch, run, errno.EROFS)
    assert main(["train", "debug", "--run-dir", str(run)] + [a for c in FOUR for a in ("--set", c)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("lens train: error: cannot write") and "Read-only file system" in last
    assert "writable --run-dir" in last


def test_a_full_disk_mid_run_is_one_line_and_the_last_checkpoint_survives(tmp_path, monkeypatch, capsys):
    from torch.distributed.checkpoint import filesystem

    run = tmp_path / "run"
    args = ["train", "debug", "--run-dir", str(run)] + [a for c in FOUR for a in ("--set", c)]
    write_item = filesystem._write_item
    calls = {"saves": 0}

    def full_after_first_checkpoint(*a, **kw):  # DCP's per-tensor writer: the disk fills at step 4
        if (run / "checkpoints" / "step_00000002").is_dir():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        calls["saves"] += 1
        return write_item(*a, **kw)

    monkeypatch.setattr(filesystem, "_write_item", full_after_first_checkpoint)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and calls["saves"] > 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("lens train: error: no space left") and "--resume" in last
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_00000002"]  # no half step 4
    monkeypatch.undo()
    resumed = train(load_config("debug", FOUR + [f"run_dir={run}"]), resume=True)
    assert resumed["step"] == 4
