"""Checkpoint files: safetensors only (pickle refused unless asked for), key/shape checks that name names.

A state dict that does not match the model is the most common way a load goes silently wrong (random
weights left in place). Every load path runs `check_compatible` first, reading only safetensors
headers, so a mismatch costs no memory and the error lists the first offending keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from safetensors import safe_open

from lens.errors import LensError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_SHOW = 5


def safetensors_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    """Key -> shape for every tensor in the given safetensors files (headers only)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as fh:
                for key in fh.keys():  # noqa: SIM118 (safe_open is not a dict)
                    shapes[key] = tuple(fh.get_slice(key).get_shape())
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise LensError(
                f"{f} is not a readable safetensors file ({err}); re-download or re-export it"
            ) from err
    return shapes


def check_compatible(expected: Mapping[str, tuple], found: Mapping[str, tuple], source: str) -> None:
    """Raise a LensError naming the first few missing, unexpected and wrongly-shaped keys."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [
        f"{k} {tuple(found[k])} != {tuple(expected[k])}"
        for k in expected
        if k in found and tuple(found[k]) != tuple(expected[k])
    ]
    if not (missing or unexpected or wrong):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
        if items:
            more = f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:_SHOW])}{more}")
    raise LensError(
        f"checkpoint {source} does not match the model config: {'; '.join(parts)}. "
        "Check that config.json belongs to these weights (depth, width, text width, selected layers)."
    )


def weight_files(folder: Path, allow_pickle: bool = False) -> list[Path]:
    """The safetensors files of a diffusers model folder (sharded or not); refuse pickle-only folders."""
    index = sorted(folder.glob("*.safetensors.index.json"))
    if index:
        names = sorted(set(json.loads(index[0].read_text())["weight_map"].values()))
        return [folder / n for n in names]
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if pickles and not allow_pickle:
        raise LensError(
            f"{folder} holds only pickle checkpoints ({', '.join(pickles[:3])}); loading them can run arbitrary "
            "code. Convert them to safetensors, or pass allow_pickle=True if you trust the source."
        )
    if not pickles:
        raise LensError(f"no weights found in {folder}; expected diffusion_pytorch_model.safetensors")
    return []
