"""Loading a pipeline for inference: local folder, hub id or the bundled model; device and dtype."""

from __future__ import annotations

from pathlib import Path

import torch

from lens.errors import LensError

# Set by the Lens-Nano work once a trained nano pipeline ships inside the package.
BUNDLED_MODEL = Path(__file__).parent / "assets" / "lens-nano"


def default_dtype(device: str) -> torch.dtype:
    """bf16 on accelerators (the released weights are bf16), fp32 on CPU (bf16 matmuls are slow there)."""
    return torch.bfloat16 if torch.device(device).type != "cpu" else torch.float32


def load_pipeline(
    model: str | None, device: str = "cpu", dtype: torch.dtype | None = None, cpu_offload=False
):
    """A LensPipeline from a folder, a hub id, or (model=None) the bundled nano model."""
    from lens.pipeline import LensPipeline

    if model is None:
        if not (BUNDLED_MODEL / "model_index.json").exists():
            raise LensError(
                "no bundled model in this install; pass --model PATH_OR_HUB_ID (e.g. microsoft/Lens)"
            )
        model = str(BUNDLED_MODEL)
    path = Path(model)
    if path.exists() and not (path / "model_index.json").exists():
        raise LensError(
            f"{model} has no model_index.json; give a pipeline folder saved by save_pretrained / lens export"
        )
    if not path.exists() and (model.count("/") != 1 or model.startswith((".", "/"))):
        raise LensError(f"{model} is neither a pipeline folder nor a hub id of the form org/name")
    dtype = dtype or default_dtype(device)
    try:
        pipe = LensPipeline.from_pretrained(model, dtype=dtype)
    except (OSError, ValueError) as err:
        if isinstance(err, LensError):
            raise
        raise LensError(f"could not load {model}: {str(err).splitlines()[0]}") from err
    if cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(leave=False)
    return pipe


def world_object_scale(model: str | None) -> float:
    """The object scale of the shapes world a pipeline trained on (`world_object_scale` in its
    model_index.json; 1.0 when absent, as for any model not trained on the world), read without
    loading it: the nano reasoner lays out its scenes at it before the model loads. `model` as
    `load_pipeline` takes it (None: the bundled model)."""
    import json

    path = Path(model) if model is not None else BUNDLED_MODEL
    if (path / "model_index.json").is_file():
        index = json.loads((path / "model_index.json").read_text())
    else:  # a hub id: its model_index.json (cached, as loading the pipeline would fetch it)
        from diffusers import DiffusionPipeline

        try:
            index = DiffusionPipeline.load_config(model)
        except (OSError, ValueError) as err:
            raise LensError(f"could not read {model}'s model_index.json: {str(err).splitlines()[0]}") from err
    return float(index.get("world_object_scale", 1.0))
