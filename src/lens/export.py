"""Weights out of training: read a run's checkpoints, and package a run as a pipeline folder.

- `load_run` / `load_trained_text`: the denoiser (raw or EMA weights) and a trained LM at a step.
- `export_run`: RUN_DIR (its config.json and latest DCP checkpoint; EMA weights when present) ->
  a diffusers pipeline folder that `LensPipeline.from_pretrained` and `lens generate --model` load.
  The frozen components come from `encoders.source`: a local pipeline folder is copied, a hub id is
  read from the local cache, `tiny` encoders are rebuilt from their seed. A LoRA run's adapter is
  written too (merged into the transformer, or on its own).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from lens.errors import LensError
from lens.model.transformer import LensTransformer2DModel
from lens.resolution import parse_size
from lens.train.checkpoint import checkpoint_keys, latest_checkpoint, list_checkpoints, load_dcp


def load_run(run_dir: str | Path, weights: str = "auto", step: int | None = None):
    """(config, model with checkpoint weights, step, 'ema'|'model') from a run directory."""
    from lens.train.presets import load_config

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise LensError(
            f"{run_dir} is not a run directory (no config.json); pass the --run-dir of `lens train`"
        )
    cfg = load_config(str(run_dir / "config.json"))
    path = latest_checkpoint(run_dir) if step is None else dict(list_checkpoints(run_dir)).get(step)
    if path is None:
        have = [s for s, _ in list_checkpoints(run_dir)]
        raise LensError(
            f"{run_dir} has no checkpoint{'' if step is None else f' for step {step}'} (have: {have or 'none'})"
        )
    keys = checkpoint_keys(path)
    has_ema = any(k.startswith("ema.") for k in keys)
    if weights == "ema" and not has_ema:
        raise LensError(f"{path} has no EMA weights (optim.ema_decay was 0); use --weights model")
    prefix = "ema" if weights == "ema" or (weights == "auto" and has_ema) else "model"
    model = LensTransformer2DModel(**cfg.model.model_kwargs()).float()
    if cfg.model.lora_rank > 0:  # the same adapter layers as in training, so the keys match
        from lens.lora import add_lora

        add_lora(model, **cfg.model.lora_kwargs())
    own = model.state_dict()
    if prefix == "ema":
        # the EMA averages the trained weights only (all of them, or a LoRA run's adapter); the frozen
        # rest is read from "model"
        state = {"ema": {k: v for k, v in own.items() if f"ema.{k}" in keys}}
        rest = {k: v for k, v in own.items() if k not in state["ema"]}
        if rest:
            state["model"] = rest
        key = ""
    else:
        # a run that trained its LM saved {"transformer": ..., "text_encoder": ...}
        key = "transformer." if cfg.encoders.text_training != "frozen" else ""
        state = {"model": {key + k: v for k, v in own.items()}}
    load_dcp(state, path)
    model.load_state_dict({k[len(key) :]: v for part in state.values() for k, v in part.items()})
    return cfg, model.eval(), int(path.name.split("_")[1]), prefix


def load_trained_text(run_dir: str | Path, step: int):
    """(text_encoder, tokenizer) as a run that trained its LM left them at `step`; None for frozen runs."""
    from lens.train.encoders import build_text
    from lens.train.presets import load_config

    cfg = load_config(str(Path(run_dir) / "config.json"))
    if cfg.encoders.text_training == "frozen":
        return None
    lm, tokenizer = build_text(cfg.encoders.source, cfg.model, torch.float32)
    state = {"model": {"text_encoder." + k: v for k, v in lm.state_dict().items()}}
    load_dcp(state, dict(list_checkpoints(run_dir))[step])
    lm.load_state_dict({k[len("text_encoder.") :]: v for k, v in state["model"].items()})
    return lm.eval(), tokenizer


def _frozen_folder(source: str) -> Path:
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    try:
        patterns = ["model_index.json", "scheduler/*", "vae/*", "text_encoder/*", "tokenizer/*"]
        return Path(snapshot_download(source, allow_patterns=patterns))
    except Exception as err:
        raise LensError(
            f"encoders.source={source!r} is neither a folder nor a cached hub repo ({err})"
        ) from None


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    weights: str = "auto",
    step: int | None = None,
    dtype: str = "auto",
    lora: str = "merge",
) -> Path:
    """Write a pipeline folder; returns it.

    A LoRA run (model.lora_rank > 0) writes its adapter as OUT/lora/pytorch_lora_weights.safetensors
    beside a pipeline whose transformer has the adapter merged in (lora="merge"), or only the adapter,
    OUT/pytorch_lora_weights.safetensors, for `load_lora_weights` on the base it trained on
    (lora="adapter": no copy of a multi-GB base).
    """
    if lora not in ("merge", "adapter"):
        raise LensError(f"lora must be merge or adapter, got {lora!r}")
    cfg, model, step, used = load_run(run_dir, weights, step)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise LensError(f"{out} exists and is not empty; choose a new output folder")
    info = {
        "run_dir": str(Path(run_dir).resolve()),
        "step": step,
        "weights": used,
        "preset": cfg.preset,
    }
    # written beside OUT and renamed into place at the end: a failed export leaves no partial folder
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        _write_export(cfg, model, run_dir, step, dtype, lora, partial, info)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def _write_export(cfg, model, run_dir, step: int, dtype: str, lora: str, out: Path, info: dict) -> None:
    out.mkdir(parents=True)
    if cfg.model.lora_rank > 0:
        from lens.lora import merge_lora, save_lora

        # float32 adapter, written before the merge and any cast to the export dtype
        save_lora(model, out if lora == "adapter" else out / "lora")
        kw = cfg.model.lora_kwargs()
        info["lora"] = {**kw, "targets": list(kw["targets"]), "base": cfg.model.init_from or "seeded init"}
        if lora == "adapter":
            (out / "lens_training.json").write_text(json.dumps(info, indent=2) + "\n")
            return
        merge_lora(model)
    elif lora == "adapter":
        raise LensError(
            f"{run_dir} trained the whole denoiser (model.lora_rank=0), so it has no adapter; export it without "
            "--lora adapter"
        )
    trained_text = load_trained_text(run_dir, step)
    if dtype == "auto":
        dtype = "bfloat16" if cfg.train.precision == "bf16" else "float32"
    model = cast_weights(model, dtype)
    h, w = parse_size(cfg.log.sample_size, "log.sample_size")
    # the pipeline's defaults are the run's sampling settings, whichever components it came with
    defaults = dict(
        default_height=h, default_width=w, default_steps=cfg.log.sample_steps,
        default_guidance_scale=cfg.log.sample_guidance, world_object_scale=cfg.data.world_object_scale,
    )  # fmt: skip
    if cfg.encoders.source == "tiny":
        from lens.pipeline import LensPipeline
        from lens.sampling.schedule import make_scheduler
        from lens.train.encoders import build_text, build_vae

        vae = build_vae("tiny", torch.float32)
        lm, tok = trained_text or build_text("tiny", cfg.model, torch.float32)
        pipe = LensPipeline(make_scheduler(), vae, lm, tok, model, **defaults)
        pipe.save_pretrained(str(out), safe_serialization=True)
    else:
        write_pipeline(_frozen_folder(cfg.encoders.source), out, model, **defaults)
        if trained_text is not None:  # the run's own LM replaces the frozen one
            shutil.rmtree(out / "text_encoder", ignore_errors=True)
            trained_text[0].save_pretrained(str(out / "text_encoder"), safe_serialization=True)
    info.update(dtype=dtype, text_training=cfg.encoders.text_training)
    (out / "lens_training.json").write_text(json.dumps(info, indent=2) + "\n")


def cast_weights(model, dtype: str):
    """`model` in `dtype` ("float32", "bfloat16"), without diffusers' advice against casting it."""
    if dtype == "float32":
        return model
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # casting a whole model on purpose; no per-module advice
    model = model.to(getattr(torch, dtype))
    diffusers_logging.set_verbosity(level)
    return model


def write_pipeline(src: Path, out: Path, transformer, **defaults) -> None:
    """A pipeline folder at `out`: `src`'s scheduler, VAE, text encoder and tokenizer copied, its
    model_index.json (released names) with `defaults` (default_height, default_steps, ...) updated,
    and `transformer` saved."""
    from lens.pipeline import released_index

    out.mkdir(parents=True, exist_ok=True)
    for name in ("scheduler", "vae", "text_encoder", "tokenizer"):
        if (src / name).is_dir():
            shutil.copytree(src / name, out / name)
    index = released_index(json.loads((src / "model_index.json").read_text()))
    index.update(defaults)
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    transformer.save_pretrained(str(out / "transformer"), safe_serialization=True)
