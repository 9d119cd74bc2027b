"""The paper's caption claim in miniature: dense vs brief vs 50/50 mixed captions at equal compute.

`captions(...)` trains one `nano` denoiser per caption policy (`data.caption`) on the same shards,
steps and seed, as concurrent processes (or one after another: `sequential`, for a small CPU), each
scoring itself on Nano-Eval every `eval_every` steps with short prompts and with the reasoner's dense
rewrites (the `nano-eval` hook). `table(...)` reads the runs' metrics.jsonl back into one row per
evaluated step. While every arm still scores at chance, `loss_table(...)` is the informative
measure: each arm's loss on held-out shards conditioned on their dense and on their brief captions,
against the null condition (`lens eval text-gain`).

The held-out bucket claim: the nano preset never trains 1:2, 2:1 or areas above 160x96, so
`lens eval nano-run --size 128x128 96x192 192x96 192x192` on the model, and `lens eval text-gain RUN
--shards HELD_OUT --sizes ...` against a run trained on every size, measure it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lens.errors import LensError

POLICIES = ("dense", "brief", "mixed")


def captions(
    out_dir: str | Path,
    overrides: list[str],
    steps: int,
    eval_every: int,
    policies: tuple[str, ...] = POLICIES,
    sequential: bool = False,
    nano_eval: bool = True,
) -> list[dict]:
    """Train the arms (one process each, side by side unless `sequential`) and return `table(out_dir)`."""
    out = Path(out_dir)
    unknown = [p for p in policies if p not in POLICIES]
    if unknown or steps < 1 or eval_every < 1:
        raise LensError(f"policies must be among {POLICIES}, steps and eval_every >= 1 (got {unknown})")
    procs = []
    for policy in policies:
        run = out / policy
        run.mkdir(parents=True, exist_ok=True)
        args = [
            *overrides,
            f"data.caption={policy}",
            f"train.steps={steps}",
            f"log.eval_every={eval_every}",
            "log.evals=nano-eval;val-loss" if nano_eval else "log.evals=val-loss",
            "log.sample_every=0",
            f"checkpoint.interval={steps}",
        ]
        cmd = [sys.executable, "-m", "lens", "train", "nano", "--run-dir", str(run)]
        cmd += [item for a in args for item in ("--set", a)]
        with open(run / "console.log", "w") as console:
            procs.append((policy, subprocess.Popen(cmd, stdout=console, stderr=subprocess.STDOUT)))
        if sequential:
            procs[-1][1].wait()
    failed = [policy for policy, p in procs if p.wait() != 0]
    if failed:
        raise LensError(f"arms {failed} failed; see {out}/<arm>/console.log")
    return table(out, policies)


def table(out_dir: str | Path, policies: tuple[str, ...] = POLICIES) -> list[dict]:
    """[{"step", "<policy>/short", "<policy>/reasoner", ...}] from each arm's metrics.jsonl."""
    from lens.train.metrics import read_rows

    rows: dict[int, dict] = {}
    for policy in policies:
        path = Path(out_dir) / policy / "metrics.jsonl"
        if not path.is_file():
            continue
        for row in read_rows(path):
            if "eval/nano/overall" in row:
                r = rows.setdefault(row["step"], {"step": row["step"]})
                r[f"{policy}/short"] = row["eval/nano/overall"]
                r[f"{policy}/reasoner"] = row["eval/nano-reasoner/overall"]
    return [rows[s] for s in sorted(rows)]


def loss_table(
    out_dir: str | Path, shards: str, policies: tuple[str, ...] = POLICIES, n: int = 32
) -> list[dict]:
    """Each arm's latest checkpoint on `shards`, conditioned on dense and on brief captions."""
    from lens.research.text_gain import run_text_gain

    rows = []
    for policy in policies:
        for caption in ("dense", "brief"):
            (r,) = run_text_gain(Path(out_dir) / policy, (), n, "model", shards, caption)
            rows.append({"policy": policy, "caption": caption, **r})
    return rows


def format_loss_table(rows: list[dict]) -> str:
    lines = [
        "| trained on | prompted with | step | val loss | null | text gain | gain / loss |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        val, null, gain = r["eval/val_loss"], r["eval/val_loss_null"], r["eval/text_gain"]
        lines.append(
            f"| {r['policy']} | {r['caption']} | {r['step']} | {val:.4f} | {null:.4f} | {gain:.4f} | {gain / val:.1%} |"
        )
    return "\n".join(lines)


def format_table(rows: list[dict], policies: tuple[str, ...] = POLICIES) -> str:
    cols = [f"{p}/{m}" for p in policies for m in ("short", "reasoner")]
    lines = ["| step | " + " | ".join(cols) + " |", "| ---: |" + " ---: |" * len(cols)]
    for r in rows:
        cells = [f"{r[c]:.3f}" if c in r else "-" for c in cols]
        lines.append(f"| {r['step']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: str | Path, policies: tuple[str, ...] = POLICIES) -> Path:
    """Nano-Eval overall over steps, one line per arm and prompt style (a PNG, `lens.plots`)."""
    from lens.plots import line_chart

    lines = {}
    for policy in policies:
        for mode in ("short", "reasoner"):
            points = [(r["step"], r[f"{policy}/{mode}"]) for r in rows if f"{policy}/{mode}" in r]
            if points:
                lines[f"{policy} captions, {mode} prompts"] = points
    return line_chart(
        path, lines, "Nano-Eval overall (1 image / prompt) by caption policy", "training step", "overall"
    )
