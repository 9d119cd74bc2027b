"""Nano-Eval in one call, for training loops: `evaluate(generate)` -> per-tag and overall scores;
`sample_results` gives the per-image results behind them (the reasoner search reads its failures).

`generate(texts, seed)` returns one image per text: a list of PIL images, or a batch array/tensor
shaped (N, 3, H, W) or (N, H, W, 3), floats in [0, 1] or uint8. Sample k of every prompt is drawn
with its own seed, in batches of at most `batch_size` texts.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

from lens.errors import LensError
from lens.eval.layout import sample_path, write_prompt_dir
from lens.eval.prompts import nano_prompts
from lens.eval.rules import summarize, verdicts
from lens.eval.score import score_image, write_results
from lens.world.reasoner import rewrite_prompt

Generate = Callable[[list[str], int], Any]


def to_images(batch: Any) -> list[Image.Image]:
    """PIL images from what a generator returns (see the module docstring)."""
    if isinstance(batch, (list, tuple)) and all(isinstance(im, Image.Image) for im in batch):
        return [im.convert("RGB") for im in batch]
    if hasattr(batch, "detach"):  # a torch tensor, without importing torch here
        batch = batch.detach().float().cpu().numpy()
    arr = np.asarray(batch)
    if arr.ndim != 4 or 3 not in (arr.shape[1], arr.shape[-1]):
        raise LensError(
            f"generate returned shape {arr.shape}; return PIL images or a (N, 3, H, W) / (N, H, W, 3) batch"
        )
    if arr.shape[-1] != 3:
        arr = arr.transpose(0, 2, 3, 1)  # (N, 3, H, W) -> (N, H, W, 3)
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(arr.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return [Image.fromarray(a) for a in arr]


def evaluate(
    generate: Generate,
    prompts: Sequence[dict] | None = None,
    n_samples: int = 4,
    seed: int = 0,
    batch_size: int = 32,
    rewrite: bool = False,
    out_dir: str | None = None,
    workers: int = 0,
    caption_style: str = "compact",
    object_scale: float = 1.0,
) -> dict[str, float]:
    """Score a generator on Nano-Eval (default: the 156-prompt suite, 4 images each).

    With `rewrite`, the generator gets the nano reasoner's dense caption of each prompt (as Lens
    uses its reasoner) instead of the short prompt, in `caption_style` (the style the model trained
    on), its scenes laid out at `object_scale` (the world's the model trained on). With `out_dir`, images and results.jsonl are
    also written in GenEval's layout, so `lens eval nano-score out_dir` reproduces the scores.
    `workers` > 1 scores in that many processes (the analyser costs ~50 ms an image) while the
    generator runs on.
    """
    prompts = list(nano_prompts() if prompts is None else prompts)
    texts = [
        rewrite_prompt(md["prompt"], style=caption_style, object_scale=object_scale)
        if rewrite
        else md["prompt"]
        for md in prompts
    ]
    results = sample_results(generate, prompts, texts, n_samples, seed, batch_size, out_dir, workers)
    return summarize(results)


def sample_results(
    generate: Generate,
    prompts: Sequence[dict],
    texts: Sequence[str],
    n_samples: int = 4,
    seed: int = 0,
    batch_size: int = 32,
    out_dir: str | None = None,
    workers: int = 0,
) -> list[dict]:
    """`evaluate` image by image: `generate` draws `texts[i]` for `prompts[i]`; one result per image
    (filename, tag, prompt, text, correct, reason, and `failed`: the rules of `lens.eval.rules.verdicts`
    it broke, e.g. ["color red circle"])."""
    if n_samples < 1 or batch_size < 1 or not prompts or len(texts) != len(prompts):
        raise LensError("Nano-Eval needs prompts, one text per prompt, n_samples >= 1 and batch_size >= 1")
    if out_dir:
        for i, md in enumerate(prompts):
            write_prompt_dir(out_dir, i, md)
    pool: Executor | None = None
    if workers > 1:  # forkserver: never fork a process that may hold CUDA or OpenMP state
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
    pending = []  # (prompt index, sample index, correctness future or result)
    try:
        for k in range(n_samples):
            for start in range(0, len(prompts), batch_size):
                chunk = list(texts[start : start + batch_size])
                images = to_images(generate(chunk, seed + 1000 * k + start // batch_size))
                if len(images) != len(chunk):
                    raise LensError(
                        f"generate returned {len(images)} images for {len(chunk)} prompts; return one per prompt"
                    )
                for i, image in enumerate(images, start):
                    if out_dir:
                        image.save(sample_path(out_dir, i, k))
                    if pool is None:
                        pending.append((i, k, _score(image, prompts[i])))
                    else:
                        pending.append((i, k, pool.submit(_score, image, prompts[i])))
        results = []
        for i, k, outcome in pending:
            correct, reason, failed = outcome if pool is None else outcome.result()
            name = sample_path(out_dir, i, k) if out_dir else f"{i:05d}/samples/{k:04d}.png"
            results.append(
                {
                    "filename": name,
                    "tag": prompts[i]["tag"],
                    "prompt": prompts[i]["prompt"],
                    "text": texts[i],
                    "correct": correct,
                    "reason": reason,
                    "failed": failed,
                }
            )
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if out_dir:
        write_results(f"{out_dir}/results.jsonl", results)
    return results


def _score(image: Image.Image, metadata: dict) -> tuple[bool, str, list[str]]:
    correct, reason, detections = score_image(image, metadata)
    return correct, reason, [v.rule for v in verdicts(detections, metadata) if not v.passed]
