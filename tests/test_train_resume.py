"""Crash safety: a run SIGKILLed while writing a checkpoint resumes to the very same losses (bitwise)."""

import json
import os
import signal
import subprocess
import sys

from lens.train.checkpoint import latest_checkpoint
from lens.train.config import load_config
from lens.train.loop import train

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
