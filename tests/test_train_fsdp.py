"""Two processes with torchrun + FSDP2 on gloo train packed batches and checkpoint; one process resumes."""

import json
import os
import subprocess
import sys

import torch

from lens.train.loop import Trainer
from lens.train.presets import load_config

COMMON = [
    "train.steps=6",
    "checkpoint.interval=3",
    "data.packing=true",
    "data.pack_tokens=48",
    "log.eval_every=3",
    "log.sample_every=0",
    "log.tensorboard=false",
]


def test_fsdp_on_two_processes_then_resume_on_one(tmp_path):
    run = tmp_path / "run"
    code = "import sys; from lens.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        "--no-python",
    ]
    cmd += [sys.executable, "-c", code, "train", "debug", "--run-dir", str(run)] + [
        a for c in COMMON for a in ("--set", c)
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "applied FSDP2 (fully_shard) to 2 blocks and the root over 2 ranks" in proc.stderr
    ckpt = run / "checkpoints" / "step_00000006"
    assert sorted(p.name for p in ckpt.glob("*.distcp")) == [
        "__0_0.distcp",
        "__1_0.distcp",
    ]  # both ranks wrote shards
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))
    val_at_6 = next(r["eval/val_loss"] for r in rows if r["step"] == 6 and "eval/val_loss" in r)
    extra = json.loads((ckpt / "meta.json").read_text())
    assert extra == {"step": 6, "world": 2}

    # one process picks the sharded checkpoint up: model and optimiser exact, data position merged
    cfg = load_config("debug", [*COMMON, "train.steps=8", f"run_dir={run}"])
    trainer = Trainer(cfg, resume=True)
    assert trainer.step == 6
    steps = {int(s["step"]) for s in trainer.optim.state_dict()["state"].values()}
    assert steps == {6}
    assert trainer.loader.cursor.partial and trainer.loader.stats["batches"] == 12  # 6 steps x 2 ranks
    summary = trainer.run()
    assert summary["step"] == 8 and all(torch.isfinite(torch.tensor(summary["losses"])))
    assert abs(summary["evals"][6]["eval/val_loss"] - val_at_6) < 1e-5  # same weights as the 2-rank run
