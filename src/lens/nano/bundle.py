"""Turn Lens-Nano parts into pipeline folders: the frozen-encoder source of training and the bundled model.

- `frozen_folder(components, out)`: the builder's `tokenizer/`, `text_encoder/`, `vae/` plus a
  `scheduler/` and a `model_index.json`, i.e. the released pipeline layout without `transformer/`.
  This is what `encoders.source` must name so that `lens export` can copy the frozen parts.
- `set_defaults(pipeline, ...)`: write the generation defaults (`default_steps`,
  `default_guidance_scale`, size, `world_object_scale`) into an exported folder's `model_index.json`, which
  `LensPipeline.__call__` reads.
- `folder_mb(path)`: the size of a folder on disk, for the 40 MB budget of the bundled model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from lens.errors import LensError

FROZEN = ("tokenizer", "text_encoder", "vae")
DEFAULT_KEYS = (
    "default_height", "default_width", "default_steps", "default_guidance_scale", "world_object_scale"
)  # fmt: skip


def folder_mb(path: str | Path) -> float:
    files = [f for f in Path(path).rglob("*") if f.is_file()]
    return round(sum(f.stat().st_size for f in files) / 2**20, 3)


TEXT_ENCODERS = ("lm", "lookup")


def frozen_folder(
    components: str | Path, out: str | Path, native_size: int | None = None, text_encoder: str = "lm"
) -> Path:
    """Copy the frozen components into `out` and add `scheduler/` and `model_index.json`.

    The placeholder denoiser and the default size follow the components' manifest (`native_size`
    overrides its size; without a manifest: the nano preset at 128x128). `text_encoder="lookup"`
    writes the LM turned into a context-free word lookup (`lens.nano.lm.word_lookup`) instead of the
    trained LM.
    """
    import dataclasses

    import torch

    from lens.model.transformer import LensTransformer2DModel
    from lens.nano.build import MANIFEST
    from lens.pipeline import LensPipeline
    from lens.sampling.schedule import make_scheduler
    from lens.train.encoders import build_text, build_vae
    from lens.train.presets import get_preset

    src, dst = Path(components), Path(out)
    if text_encoder not in TEXT_ENCODERS:
        raise LensError(f"text_encoder must be one of {', '.join(TEXT_ENCODERS)}; got {text_encoder!r}")
    missing = [name for name in FROZEN if not (src / name).is_dir()]
    if missing:
        raise LensError(f"{src} lacks {', '.join(missing)}: run `lens nano build-components {src}` first")
    if dst.exists() and any(dst.iterdir()):
        raise LensError(f"{dst} exists and is not empty; choose a new folder")
    cfg = get_preset("nano").model
    if (src / MANIFEST).is_file():  # the components' own text width and layers
        settings = json.loads((src / MANIFEST).read_text())["denoiser_settings"]
        cfg = dataclasses.replace(
            cfg,
            enc_hidden_dim=settings["enc_hidden_dim"],
            selected_layer_index=tuple(settings["selected_layer_index"]),
        )
        native_size = native_size or settings["native_size"]
    native_size = native_size or 128
    vae = build_vae(str(src), torch.float32)
    lm, tok = build_text(str(src), cfg, torch.float32)
    # A one-block placeholder denoiser, only so that the pipeline writes a complete model_index.json.
    placeholder = LensTransformer2DModel(
        num_layers=1,
        num_attention_heads=1,
        attention_head_dim=cfg.attention_head_dim,
        axes_dims_rope=cfg.axes_dims_rope,
        enc_hidden_dim=cfg.enc_hidden_dim,
        selected_layer_index=cfg.selected_layer_index,
    )
    pipe = LensPipeline(
        make_scheduler(), vae, lm, tok, placeholder, default_height=native_size, default_width=native_size
    )
    with tempfile.TemporaryDirectory() as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(tmp) / "model_index.json", dst / "model_index.json")
        shutil.copytree(Path(tmp) / "scheduler", dst / "scheduler")
    for name in FROZEN:  # the builder's own files, byte for byte
        if name == "text_encoder" and text_encoder == "lookup":
            from lens.nano.lm import word_lookup

            word_lookup(lm).save_pretrained(dst / name, safe_serialization=True)
        else:
            shutil.copytree(src / name, dst / name)
    return dst


def set_defaults(pipeline: str | Path, **defaults) -> dict:
    """Update the generation defaults in `pipeline/model_index.json`; returns the new index."""
    unknown = sorted(set(defaults) - set(DEFAULT_KEYS))
    if unknown:
        raise LensError(f"unknown defaults {unknown}; choose from {list(DEFAULT_KEYS)}")
    path = Path(pipeline) / "model_index.json"
    if not path.is_file():
        raise LensError(f"{pipeline} has no model_index.json; export a run there first (`lens export`)")
    index = json.loads(path.read_text())
    index.update(defaults)
    path.write_text(json.dumps(index, indent=2) + "\n")
    return index
