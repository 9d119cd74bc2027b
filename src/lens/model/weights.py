"""Checkpoint files: safetensors only (pickle refused unless asked for), key/shape checks that name names.

A state dict that does not match the model is the most common way a load goes silently wrong (random
weights left in place). Every load path runs `check_compatible` first, reading only safetensors
headers, so a mismatch costs no memory and the error lists the first offending keys. LoRA adapters
(`lens.lora`) get the same: `lora_file` finds the file (never a pickle), `check_lora_state_dict`
matches every key and shape to the denoiser before peft sees it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY, LORA_WEIGHT_NAME_SAFE
from safetensors import safe_open
from torch import nn

from lens.errors import LensError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_SHOW = 5
_LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A\.weight|lora_B\.weight|lora_B\.bias)$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


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


# ---------------------------------------------------------------------- LoRA adapters
def lora_file(source: str | Path, weight_name: str | None = None, **hub_kwargs) -> Path:
    """The adapter file of a folder, a .safetensors file or a hub repo id; pickle files are refused."""
    path = Path(source)
    if weight_name is not None and Path(weight_name).suffix in PICKLE_SUFFIXES:
        raise _lora_pickle_error(weight_name)
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES:
            raise _lora_pickle_error(path)
        if path.suffix != ".safetensors":
            raise LensError(f"{path} is not a .safetensors file; pass the LoRA's {LORA_WEIGHT_NAME_SAFE}")
        return path
    if path.is_dir():
        if weight_name is not None:
            return lora_file(path / weight_name)
        if (path / LORA_WEIGHT_NAME_SAFE).is_file():
            return path / LORA_WEIGHT_NAME_SAFE
        found = sorted(path.glob("*.safetensors"))
        if len(found) == 1:
            return found[0]
        if found:
            raise LensError(
                f"{path} holds several safetensors files ({', '.join(f.name for f in found[:3])}) and no "
                f"{LORA_WEIGHT_NAME_SAFE}; pass the adapter file itself"
            )
        pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise _lora_pickle_error(path / pickles[0])
        raise LensError(f"{path} holds no {LORA_WEIGHT_NAME_SAFE}; pass a LoRA folder or file")
    if (
        isinstance(source, str)
        and _HUB_ID.match(source)
        and path.suffix not in (".safetensors", *PICKLE_SUFFIXES)
    ):
        return _hub_file(source, weight_name or LORA_WEIGHT_NAME_SAFE, hub_kwargs)
    raise LensError(
        f"LoRA {source} does not exist; pass a folder holding {LORA_WEIGHT_NAME_SAFE}, the file itself, "
        "or a hub repo id"
    )


def _lora_pickle_error(path) -> LensError:
    return LensError(
        f"{path}: LoRA weights load from safetensors only (pickle files can run arbitrary code); "
        "convert the adapter to safetensors first"
    )


def _hub_file(repo: str, name: str, hub_kwargs: dict) -> Path:
    from huggingface_hub import hf_hub_download

    keep = ("subfolder", "revision", "token", "cache_dir", "local_files_only", "force_download", "proxies")
    try:
        return Path(hf_hub_download(repo, name, **{k: v for k, v in hub_kwargs.items() if k in keep}))
    except Exception as err:  # offline, missing repo or file: one line, not a hub traceback
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise LensError(f"could not fetch {name} from the hub repo {repo!r} ({first})") from None


def read_lora_file(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(state dict, adapter metadata or None) of a safetensors adapter; a damaged file is a LensError."""
    from safetensors.torch import load_file

    safetensors_shapes([path])  # reads the header only: a corrupt file fails here with its name
    with safe_open(str(path), framework="pt") as fh:
        header = fh.metadata() or {}
    raw = header.get(LORA_ADAPTER_METADATA_KEY)
    try:
        metadata = json.loads(raw) if raw else None
    except ValueError:
        raise LensError(
            f"{path}: its {LORA_ADAPTER_METADATA_KEY} header is not JSON; re-save the adapter"
        ) from None
    return load_file(str(path), device="cpu"), metadata


def check_lora_state_dict(state: dict, model: nn.Module, source: str, component: str = "transformer") -> None:
    """Every key `<component>.<module>.lora_A/B...` of a Linear the model has, with shapes that fit it."""
    prefix = component + "."
    modules = dict(model.named_modules())
    bad, missing, wrong, ranks = [], [], [], {}
    for key, value in state.items():
        m = _LORA_KEY.match(key[len(prefix) :] if key.startswith(prefix) else "")
        if m is None:
            bad.append(key)
            continue
        name, part = m["module"], m["part"]
        layer = modules.get(name)
        layer = layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer
        if not isinstance(layer, nn.Linear):
            missing.append(name)
            continue
        if part == "lora_A.weight":
            expected, rank = (value.shape[0], layer.in_features), value.shape[0]
        elif part == "lora_B.weight":
            expected, rank = (layer.out_features, value.shape[-1]), value.shape[-1]
        else:
            expected, rank = (layer.out_features,), None
        if tuple(value.shape) != tuple(expected) or (
            rank is not None and ranks.setdefault(name, rank) != rank
        ):
            wrong.append(f"{key} {tuple(value.shape)}")
    if not state:
        raise LensError(f"{source} holds no LoRA weights")
    if bad:
        raise LensError(
            f"{source} is not a Lens LoRA in diffusers' layout ({len(bad)} keys like {bad[0]!r}; expected "
            f"'{prefix}<module>.lora_A.weight' / 'lora_B.weight')"
        )
    parts = []
    for label, items in (("modules the denoiser lacks", missing), ("shapes that do not fit", wrong)):
        if items:
            items = sorted(set(items))
            more = f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:_SHOW])}{more}")
    if parts:
        raise LensError(
            f"LoRA {source} does not fit this denoiser ({'; '.join(parts)}); it was trained for another model"
        )
