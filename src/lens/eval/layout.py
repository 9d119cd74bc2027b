"""GenEval's folder layout for generated images, which Nano-Eval reads and writes:

    <outdir>/<prompt_index:05d>/metadata.jsonl      one line: the prompt's GenEval metadata
    <outdir>/<prompt_index:05d>/samples/<k:04d>.png  the k-th image for that prompt (GenEval uses 4)

`prompt_index` is the prompt's line number (from 0) in the prompt JSONL. Any image size works.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

from lens.errors import LensError
from lens.eval.prompts import check_metadata


def prompt_dir(root: str, index: int) -> str:
    return os.path.join(root, f"{index:05d}")


def sample_path(root: str, index: int, k: int) -> str:
    return os.path.join(prompt_dir(root, index), "samples", f"{k:04d}.png")


def write_prompt_dir(root: str, index: int, metadata: dict) -> str:
    """Create <root>/<index>/samples/ and its metadata.jsonl; returns the prompt folder."""
    folder = prompt_dir(root, index)
    os.makedirs(os.path.join(folder, "samples"), exist_ok=True)
    with open(os.path.join(folder, "metadata.jsonl"), "w") as f:
        f.write(json.dumps(metadata) + "\n")
    return folder


def iter_prompt_dirs(root: str) -> Iterator[tuple[int, dict, list[str]]]:
    """(prompt index, metadata, sample image paths) for every prompt folder, in index order."""
    if not os.path.isdir(root):
        raise LensError(f"{root} is not a folder; pass the output folder of your generator (GenEval layout)")
    names = sorted(n for n in os.listdir(root) if n.isdigit() and os.path.isdir(os.path.join(root, n)))
    if not names:
        raise LensError(
            f"{root} holds no prompt folders; expected <root>/00000/metadata.jsonl and <root>/00000/samples/0000.png "
            "(see `lens eval render-reference` for an example)"
        )
    for name in names:
        meta_path = os.path.join(root, name, "metadata.jsonl")
        if not os.path.isfile(meta_path):
            raise LensError(f"{meta_path} is missing; each prompt folder needs its metadata line")
        with open(meta_path) as f:
            metadata = check_metadata(json.loads(f.readline()), meta_path)
        samples = os.path.join(root, name, "samples")
        paths = (
            sorted(os.path.join(samples, p) for p in os.listdir(samples) if p.endswith(".png"))
            if os.path.isdir(samples)
            else []
        )
        yield int(name), metadata, paths
