"""Nano-Eval of a pipeline over settings: guidance scales x sizes x (short prompts | reasoner rewrites).

`sweep(pipe, ...)` runs the full protocol (GenEval's 4 images per prompt by default) for every
combination and returns one row per setting: the per-tag and overall scores plus the seconds it
took. `format_rows` prints them as one table, the form docs/nano-experiments.md records.
`pipeline_generator` is the `generate(prompts, seed)` of a pipeline that the sweep and the gate use.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lens.eval.nano_eval import evaluate
from lens.eval.rules import TAGS


@dataclass(frozen=True)
class Setting:
    guidance: float
    height: int
    width: int
    reasoner: bool

    @property
    def label(self) -> str:
        prompts = "reasoner" if self.reasoner else "short"
        return f"{prompts}, CFG {self.guidance:g}, {self.height}x{self.width}"


def settings(
    guidances: Sequence[float], sizes: Sequence[tuple[int, int]], reasoner: Sequence[bool]
) -> list[Setting]:
    return [Setting(g, h, w, r) for r, (h, w), g in itertools.product(reasoner, sizes, guidances)]


def pipeline_generator(
    pipe, steps: int = 20, guidance: float | None = None, height: int | None = None, width: int | None = None
) -> Callable[[list[str], int], np.ndarray]:
    """`generate(prompts, seed)` -> (B, H, W, 3) images, as `evaluate` and the gate take; None = the
    pipeline's default. The noise is drawn on the CPU, so a seed gives the same images on CPU and GPU."""

    def generate(texts: list[str], seed: int) -> np.ndarray:
        out = pipe(
            texts,
            height=height,
            width=width,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=torch.Generator().manual_seed(seed),
            output_type="np",
        )
        return out.images

    return generate


def sweep(
    pipe,
    grid: Sequence[Setting],
    steps: int = 20,
    n_samples: int = 4,
    seed: int = 0,
    batch_size: int = 32,
    workers: int = 0,
    out_dir: str | None = None,
    prompts: Sequence[dict] | None = None,
    caption_style: str = "compact",
    object_scale: float | None = None,
) -> list[dict]:
    """One row per setting: {"setting", "guidance", "size", "reasoner", <tag>: score, "overall", "seconds"}.

    The reasoner's rewrites are phrased in `caption_style`, the style the model trained on, and laid
    out at `object_scale` (None: the pipeline's `world_object_scale`)."""
    if object_scale is None:
        object_scale = float(pipe.config.get("world_object_scale", 1.0))
    rows = []
    for s in grid:
        generate = pipeline_generator(pipe, steps, s.guidance, s.height, s.width)
        folder = f"{out_dir}/{s.label.replace(', ', '_').replace(' ', '')}" if out_dir else None
        t0 = time.perf_counter()
        scores = evaluate(
            generate, prompts, n_samples=n_samples, seed=seed, batch_size=batch_size, rewrite=s.reasoner,
            out_dir=folder, workers=workers, caption_style=caption_style, object_scale=object_scale,
        )  # fmt: skip
        rows.append(
            {
                "setting": s.label,
                "guidance": s.guidance,
                "size": f"{s.height}x{s.width}",
                "reasoner": s.reasoner,
                **scores,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    return rows


def format_rows(rows: list[dict]) -> str:
    """A markdown table: one line per setting, one column per tag, then overall."""
    head = ["setting", *TAGS, "overall", "s"]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for r in rows:
        cells = [r["setting"], *(f"{r.get(t, 0.0):.3f}" for t in TAGS), f"**{r['overall']:.3f}**"]
        lines.append("| " + " | ".join(cells) + f" | {r['seconds']:.0f} |")
    return "\n".join(lines)
