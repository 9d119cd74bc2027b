"""Observability: console progress, TensorBoard scalars and a per-step JSON-lines log.

Every step appends {"step", "loss", "grad_norm", "lr", "skipped"} to RUN_DIR/metrics.jsonl (rank 0;
the loss is the mean over ranks and printed with full precision, which the resume tests compare).
Every `log.every` steps the throughput counters are summed over ranks and a line is printed:
step, loss, grad norm, images/s, tokens/s, MFU (useful MMDiT FLOPs, PaLM convention, see
`lens.model.flops`), peak memory, ETA, skipped steps and data problems.
"""

from __future__ import annotations

import json
import logging
import resource
import time
from pathlib import Path

import torch

from lens.train.distributed import DistInfo, all_reduce_sum

log = logging.getLogger("lens.train")

# Dense bf16 peak TFLOP/s by device-name substring (first match wins).
PEAK_TFLOPS = (("H200", 989.0), ("H100", 989.0), ("H800", 989.5), ("A100", 312.0), ("A800", 312.0))
PEAK_TFLOPS += (("L40S", 362.0), ("L4", 121.0), ("A10", 125.0), ("B200", 2250.0), ("GB200", 2500.0))


def peak_flops(device: torch.device, configured_tflops: float) -> float | None:
    if configured_tflops > 0:
        return configured_tflops * 1e12
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in PEAK_TFLOPS:
            if key in name:
                return tflops * 1e12
    return None


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux -> ~GB


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a metrics.jsonl. A line that does not parse is dropped: a kill mid-write leaves the
    last line torn, and that must not block a resume."""
    rows = []
    for line in Path(path).read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def _drop_rows_after(path: Path, step: int) -> None:
    if not path.is_file():
        return
    rows = [row for row in read_rows(path) if row["step"] <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


class Metrics:
    def __init__(self, run_dir: str | Path, log_cfg, info: DistInfo, total_steps: int, start_step: int):
        self.cfg, self.info, self.total = log_cfg, info, total_steps
        self.peak = peak_flops(info.device, log_cfg.peak_tflops)
        self.window = [0.0] * 6  # images, image tokens, text tokens, padding tokens, flops, seconds
        self.step_time: float | None = None
        self.start_step = start_step
        self.writer = None
        self.jsonl = None
        if info.is_main:
            run_dir = Path(run_dir)
            _drop_rows_after(run_dir / "metrics.jsonl", start_step)  # a resumed run rewrites what followed
            self.jsonl = open(run_dir / "metrics.jsonl", "a")  # noqa: SIM115  (kept open for the run)
            if log_cfg.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_step + 1)

    def record(
        self,
        step: int,
        loss: float,
        grad_norm: float,
        lr: float,
        skipped: bool,
        counts: list[float],
        seconds: float,
        extra: dict | None = None,
    ) -> None:
        """counts: this rank's [images, image tokens, text tokens, padding tokens, flops] of the step;
        `extra`: more numbers for the step's row (`lens rl`: reward mean and std, KL)."""
        for i, v in enumerate(counts):
            self.window[i] += v
        self.window[5] += seconds
        self.step_time = seconds if self.step_time is None else 0.9 * self.step_time + 0.1 * seconds
        if self.jsonl is not None:
            row = {"step": step, "loss": loss, "grad_norm": grad_norm, "lr": lr, "skipped": skipped}
            row.update(extra or {})
            self.jsonl.write(json.dumps(row) + "\n")
            self.jsonl.flush()

    def report(
        self,
        step: int,
        loss: float,
        grad_norm: float,
        lr: float,
        skipped_total: int,
        data_stats: dict,
        extra: dict | None = None,
    ) -> None:
        """Print and log the window; collective (every rank must call it at the same steps). `extra`
        values are printed after the loss and logged as train/NAME."""
        images, img_tok, txt_tok, pad_tok, flops = all_reduce_sum(self.window[:5], self.info)
        seconds = max(self.window[5], 1e-9)
        self.window = [0.0] * 6
        tokens = img_tok + txt_tok
        scalars = {
            "train/loss": loss,
            "train/grad_norm": grad_norm,
            "train/lr": lr,
            "perf/images_per_s": images / seconds,
            "perf/tokens_per_s": tokens / seconds,
            "perf/tflops_per_rank": flops / seconds / self.info.world / 1e12,
            "perf/padding_fraction": pad_tok / max(tokens + pad_tok, 1),
            "perf/peak_memory_gb": peak_memory_gb(self.info.device),
            "train/skipped_steps": skipped_total,
            "data/bad_samples": data_stats.get("bad_samples", 0),
            "data/bad_shards": data_stats.get("bad_shards", 0),
        }
        extra = extra or {}
        scalars.update({f"train/{k}": v for k, v in extra.items()})
        mfu = ""
        if self.peak:
            scalars["perf/mfu"] = flops / seconds / self.info.world / self.peak
            mfu = f" | MFU {100 * scalars['perf/mfu']:.1f}%"
        if not self.info.is_main:
            return
        eta = (self.total - step) * (self.step_time or 0.0)
        bad = data_stats.get("bad_samples", 0) + data_stats.get("bad_shards", 0)
        log.info(
            "step %d/%d | loss %.4f%s | gnorm %.3f | lr %.2e | %.1f img/s | %.0f tok/s%s | mem %.2f GB | ETA %s%s%s",
            step,
            self.total,
            loss,
            "".join(f" | {k} {v:.4g}" for k, v in extra.items()),
            grad_norm,
            lr,
            scalars["perf/images_per_s"],
            scalars["perf/tokens_per_s"],
            mfu,
            scalars["perf/peak_memory_gb"],
            _duration(eta),
            f" | skipped {skipped_total}" if skipped_total else "",
            f" | bad data {data_stats.get('bad_shards', 0)} shards {data_stats.get('bad_samples', 0)} samples"
            if bad
            else "",
        )
        self.scalars(step, scalars)

    def scalars(self, step: int, values: dict) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)
        if self.jsonl is not None and any(k.startswith("eval/") for k in values):
            self.jsonl.write(json.dumps({"step": step, **values}) + "\n")
            self.jsonl.flush()

    def image(self, tag: str, image_chw, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, image_chw, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()


def timer() -> float:
    return time.perf_counter()
