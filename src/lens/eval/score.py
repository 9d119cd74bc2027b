"""Scoring generated images: one image against its metadata, or a whole GenEval-layout folder."""

from __future__ import annotations

import json
import os
from collections import Counter

from PIL import Image

from lens.errors import LensError
from lens.eval.detect import Detection, detect
from lens.eval.layout import iter_prompt_dirs
from lens.eval.rules import evaluate, summarize


def score_image(image: Image.Image, metadata: dict) -> tuple[bool, str, list[Detection]]:
    """(correct, reason, detections) for one image under GenEval's rules."""
    detections = detect(image)
    correct, reason = evaluate(detections, metadata)
    return correct, reason, detections


def score_folder(folder: str) -> tuple[list[dict], dict[str, float]]:
    """Score every sample of a GenEval-layout folder (see lens.eval.layout).

    Returns (results, scores): one result per image (filename, tag, prompt, correct, reason,
    metadata, detections; GenEval's results.jsonl fields) and the per-tag and overall scores.
    """
    results = []
    for _, metadata, paths in iter_prompt_dirs(folder):
        for path in paths:
            try:
                with Image.open(path) as im:
                    image = im.convert("RGB")
            except OSError as err:
                raise LensError(f"cannot read image {path} ({err}); regenerate it or remove it") from err
            correct, reason, detections = score_image(image, metadata)
            results.append(
                {
                    "filename": path,
                    "tag": metadata["tag"],
                    "prompt": metadata.get("prompt", ""),
                    "correct": correct,
                    "reason": reason,
                    "metadata": json.dumps(metadata),
                    "detections": [d.to_dict() for d in detections],
                }
            )
    if not results:
        raise LensError(f"no sample images under {folder}/*/samples/; generate images first")
    return results, summarize(results)


def image_counts(results: list[dict]) -> dict[str, int]:
    return dict(Counter(r["tag"] for r in results))


def write_results(path: str, results: list[dict]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
