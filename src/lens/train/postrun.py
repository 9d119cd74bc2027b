"""The run of a post-training command (`lens rl`, `lens distill`) on the training engine's pieces.

`PostTrainer` holds what both do the same way: one process (no FSDP yet), a run directory that a
second start refuses without --resume, RUN_DIR/train.log, CPU threads, the device, bf16 autocast,
DCP checkpoints of the trained modules (`trained`, `optim` and an EMA slot, `ema`) with the RNG
state, and the loop: step, console / TensorBoard line, sample grid, checkpoint, SIGTERM (saved, then
stopped). A command sets `command` and `cfg` (with `run`, `optim`, `checkpoint` and `log` sections,
`lens.train.posttrain`), and implements `one_step() -> dict` (loss, grad_norm, lr and its own numbers,
which the console line prints) and `preview()`; `finish()` runs once the last step is done.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn

from lens.errors import LensError
from lens.train.checkpoint import Checkpointer, latest_checkpoint, rng_state, set_rng_state
from lens.train.config import ParallelConfig
from lens.train.distributed import init_distributed, shutdown
from lens.train.faults import StopSignal
from lens.train.logs import close_logging, log, setup_logging

_LOGGED = ("loss", "grad_norm", "lr")  # every step's row has them; the rest is the command's own


class PostTrainer:
    command = "lens"  # e.g. "lens rl", in errors
    trained: nn.Module  # what the checkpoints hold as "model", with `optim`
    ema = None  # the checkpoint's EMA slot (`lens rl`: the old policy), or None

    def check_start(self, run_dir: Path, resume: bool) -> None:
        """Refuse a multi-process launch, and a run directory with checkpoints unless resuming."""
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise LensError(
                f"{self.command} runs in one process (it has no FSDP yet); launch it without torchrun"
            )
        if latest_checkpoint(run_dir) is not None and not resume:
            raise LensError(
                f"{run_dir} already has checkpoints: pass --resume to continue it, or another --run-dir"
            )
        self.run_dir = run_dir

    def open_run(self, run_cfg) -> torch.device:
        """The run directory, its log, the CPU threads and the device (returned)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        setup_logging(self.run_dir, True)
        self._threads = torch.get_num_threads()
        if run_cfg.threads > 0:
            torch.set_num_threads(run_cfg.threads)
        self.info = init_distributed(run_cfg, ParallelConfig(fsdp="off"))
        self.bf16 = run_cfg.precision == "bf16"
        self.step, self.stopped = 0, None
        return self.info.device

    def resume_state(self, resume: bool) -> None:
        """Checkpoints of `trained`, `optim` and `ema`; with `resume`, the newest intact one is loaded."""
        self.ckpt = Checkpointer(self.run_dir, self.info, self.cfg.checkpoint.keep)
        extra = self.ckpt.resume(self.trained, self.optim, self.ema) if resume else None
        if extra is not None:
            self.step = int(extra["step"])
            set_rng_state(extra["ranks"][0]["rng"])

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.bf16 else None

    def autocast(self):
        return torch.autocast(self.info.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def clip_and_step(self, params: list, loss: float, what: str) -> float:
        """Clip the gradients of `params` (optim.grad_clip; 0 = measure only), refuse a non-finite loss
        or norm in one line, then one optimiser step; returns the gradient norm."""
        clip = self.cfg.optim.grad_clip if self.cfg.optim.grad_clip > 0 else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(params, clip, foreach=True))
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise LensError(
                f"step {self.step + 1}: {what} ({loss}) or its gradient norm ({norm}) is not finite; lower "
                "the learning rate or resume from an earlier checkpoint"
            )
        self.optim.step()
        self.optim.zero_grad(set_to_none=True)
        return norm

    def one_step(self) -> dict:
        raise NotImplementedError

    def preview(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """After the last step (not after a stop request)."""

    def run(self) -> dict:
        cfg = self.cfg
        history: list[dict] = []
        try:
            with StopSignal() as stop:
                while self.step < cfg.run.steps:
                    row = self.one_step()
                    history.append(row)
                    last = self.step == cfg.run.steps or stop.requested
                    if self.step % cfg.log.every == 0 or last:
                        extra = {k: v for k, v in row.items() if k not in _LOGGED}
                        self.metrics.report(self.step, row["loss"], row["grad_norm"], row["lr"], 0, {}, extra)
                    if cfg.log.sample_every and (self.step % cfg.log.sample_every == 0 or last):
                        self.preview()
                    if self.step % cfg.checkpoint.interval == 0 or last:
                        self.save()
                    if stop.requested:
                        log.info("SIGTERM at step %d: saved; continue with --resume", self.step)
                        self.stopped = "SIGTERM"
                        break
            if self.stopped is None:
                self.finish()
        finally:
            self.close()
        return {"step": self.step, "history": history, "stopped": self.stopped}

    def save(self) -> Path:
        state = {"lr": self.cfg.optim.lr}
        return self.ckpt.save(self.step, self.trained, self.optim, self.ema, {"rng": rng_state()}, state)

    def close(self) -> None:
        self.metrics.close()
        shutdown(self.info)
        torch.set_num_threads(self._threads)
        close_logging()
