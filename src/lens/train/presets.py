"""Named training presets (`lens train NAME`) and `load_config`, which reads any CONFIG argument.

- `debug`: a 2-block model, tiny random encoders and shapes-world data; seconds on one CPU (tests, CI).
- `nano`: the laptop model (8.3M-parameter Lens-shaped denoiser, 64-wide frozen LM features, small
  images); point `encoders.source` at the Lens-Nano encoder folder and `data.shards` at world shards.
- `lens-1.2b`: the paper's ablation size (32 blocks x 1024 wide, 1.22B parameters) on the stage-1 recipe.
- `lens-stage1` / `lens-stage2`: the 4.1B recipe with the paper's numbers (REFERENCE 9).

Per-GPU batch sizes are per bucket; the global batch is ranks x batch x grad_accum (the paper's 3072 at
512^2 is 128 GPUs x 24). Values the paper does not state (weight decay, warm-up, EMA, caption drop rate,
logit std) are marked "not stated" and set to common choices.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

from lens.errors import LensError
from lens.train.config import (
    CheckpointConfig,
    Config,
    DataConfig,
    EncoderConfig,
    FaultConfig,
    LogConfig,
    ModelConfig,
    ObjectiveConfig,
    OptimConfig,
    ParallelConfig,
    TrainConfig,
    apply_dict,
    apply_overrides,
    validate,
)

DEBUG_PROMPTS = ("a red circle to the left of a blue square", "two yellow triangles")
NANO_PROMPTS = (
    "a red circle to the left of a blue square",
    "two yellow triangles on a dark background",
    "a green square above a purple circle",
    "three small white circles in a row",
)
LENS_PROMPTS = (
    "A red fox sitting in fresh snow at sunrise, soft golden light, shallow depth of field.",
    "A wooden sign that reads 'OPEN DAILY' hanging on a blue door of a stone cottage.",
    "Three ceramic mugs on a kitchen shelf, the left one green, the middle one white, the right one yellow.",
    "An astronaut riding a horse across a desert under a purple sky.",
)


def debug() -> Config:
    return Config(
        preset="debug",
        model=ModelConfig(
            num_layers=2,
            num_attention_heads=2,
            attention_head_dim=16,
            enc_hidden_dim=24,
            axes_dims_rope=(4, 6, 6),
            selected_layer_index=(0, 1),
        ),
        encoders=EncoderConfig(source="tiny", max_text_tokens=320),
        data=DataConfig(
            shards="synthetic",
            buckets="64x64:4,48x80:4,80x48:4",
            shuffle_buffer=16,
            caption_dropout=0.1,
            workers=2,
            synthetic_samples=48,
            synthetic_shards=4,
        ),
        objective=ObjectiveConfig(),
        optim=OptimConfig(lr=2e-3, warmup_steps=2, grad_clip=1.0, ema_decay=0.9),
        train=TrainConfig(steps=40, precision="fp32", activation_checkpointing=True, threads=1),
        checkpoint=CheckpointConfig(interval=20, keep=2),
        log=LogConfig(
            every=5,
            sample_every=40,
            sample_prompts=DEBUG_PROMPTS,
            sample_size="64x64",
            sample_steps=4,
            sample_guidance=3.0,
            eval_every=20,
            evals=("val-loss",),
        ),
        fault=FaultConfig(),
    )


def nano() -> Config:
    # Sized for 2 CPU cores: 6 blocks x 192 wide (8.3M), one 128x128 image in < 1 s at 20 steps with CFG.
    # Text features: all 4 layers of the 64-wide nano LM (`lens nano build-components`). fp32: bf16
    # autocast is at best as fast on CPUs with AMX and 10x slower on CPUs without (AVX2 only).
    # The shipped Lens-Nano v2's recipe (docs/nano-experiments.md, eleventh session; `lens nano build`
    # adds the world: one size, objects 1.8x, word-lookup features). Departures from the 4.1B recipe,
    # each measured: compact dense captions (data.caption_style); each object phrase's text tokens at
    # its object's place in RoPE (model.text_grounding: gate (ii) 0.07 -> 0.54 at 31 CPU-minutes); a
    # logit-normal mean of 2.0, which trains where the caption decides the layout (sigma >= 0.9).
    # Measured and off here: absolute sin-cos positions (model.pos_embed=rope+sincos) and whitened
    # txt_in (model.txt_in_init=whiten), which helped an ungrounded nano (sixth session).
    return Config(
        preset="nano",
        model=ModelConfig(
            num_layers=6,
            num_attention_heads=3,
            attention_head_dim=64,
            enc_hidden_dim=64,
            axes_dims_rope=(8, 28, 28),
            selected_layer_index=(0, 1, 2, 3),
            pos_embed="rope",
            txt_in_init="default",
            text_grounding=True,
        ),
        # float32 encoders on GPU too: the bundled model runs them in float32 on CPU
        encoders=EncoderConfig(source="tiny", max_text_tokens=448, dtype="float32"),
        data=DataConfig(
            shards="synthetic",
            buckets="128x128:16",  # mixed: "128x128:16,96x160:16,160x96:16" (and the world's sizes)
            shuffle_buffer=2000,
            caption_dropout=0.1,  # the null condition for CFG (REFERENCE 12)
            workers=1,
            synthetic_samples=8192,
            synthetic_shards=16,
        ),
        objective=ObjectiveConfig(logit_mean=2.0),
        optim=OptimConfig(lr=8e-4, warmup_steps=200, grad_clip=1.0, ema_decay=0.995),
        train=TrainConfig(steps=3500, precision="fp32", activation_checkpointing=False, threads=2),
        checkpoint=CheckpointConfig(interval=250, keep=8),
        log=LogConfig(
            every=20,
            sample_every=500,
            sample_prompts=NANO_PROMPTS,
            sample_size="128x128",
            sample_steps=20,
            sample_guidance=3.0,
            eval_every=1000,
            evals=("val-loss", "colour-share", "gate"),
        ),
    )


def _lens_common(
    preset: str, model: ModelConfig, data: DataConfig, lr: float, objective: ObjectiveConfig
) -> Config:
    return Config(
        preset=preset,
        model=model,
        encoders=EncoderConfig(source="microsoft/Lens", dtype="bfloat16"),
        data=data,
        objective=objective,
        # AdamW (0.9, 0.999), constant LR, clip 1.0 (REFERENCE 9); weight decay, warm-up, EMA: not stated
        optim=OptimConfig(
            lr=lr, betas=(0.9, 0.999), weight_decay=0.0, warmup_steps=0, grad_clip=1.0, ema_decay=0.0
        ),
        train=TrainConfig(steps=400_000, precision="bf16", activation_checkpointing=True, compile=True),
        parallel=ParallelConfig(fsdp="auto"),
        checkpoint=CheckpointConfig(interval=5000, keep=3),
        log=LogConfig(
            every=10,
            sample_every=5000,
            sample_prompts=LENS_PROMPTS,
            sample_size="512x512",
            eval_every=5000,
            evals=("val-loss",),
        ),
    )


def lens_1_2b() -> Config:
    model = ModelConfig(num_layers=32, num_attention_heads=16, attention_head_dim=64)
    data = DataConfig(shards="", buckets="512x512:24", shuffle_buffer=2000, caption="dense")
    return _lens_common("lens-1.2b", model, data, 2e-4, ObjectiveConfig(logit_mean=1.06))


def lens_stage1() -> Config:
    # 512x512, 400K steps, global batch 3072 (128 GPUs x 24), LR 2e-4, logit-normal mean 1.06
    data = DataConfig(shards="", buckets="512x512:24", shuffle_buffer=2000, caption="dense")
    return _lens_common("lens-stage1", ModelConfig(), data, 2e-4, ObjectiveConfig(logit_mean=1.06))


def lens_stage2() -> Config:
    # 27 buckets (3 areas x 9 ratios) with per-GPU batch 24/10/6, LR 1e-4, mean 1.0 @256 -> 1.3 @4096 tokens.
    # Start from stage 1: --set model.init_from=<exported stage-1 pipeline folder>
    data = DataConfig(shards="", buckets="lens", shuffle_buffer=2000, caption="dense")
    return _lens_common("lens-stage2", ModelConfig(), data, 1e-4, ObjectiveConfig(logit_mean=None))


PRESETS: dict[str, Callable[[], Config]] = {
    "debug": debug,
    "nano": nano,
    "lens-1.2b": lens_1_2b,
    "lens-stage1": lens_stage1,
    "lens-stage2": lens_stage2,
}


def get_preset(name: str, presets: dict | None = None):
    presets = PRESETS if presets is None else presets
    if name not in presets:
        raise LensError(f"unknown preset {name!r}; presets are {', '.join(presets)}")
    return copy.deepcopy(presets[name]())


def load_config(spec: str, overrides: list[str] | None = None) -> Config:
    """CONFIG = a preset name, or a .json/.toml file (optionally naming a base `preset`), plus --set overrides."""
    return build_config(spec, overrides, PRESETS, Config, validate)


def build_config(spec: str, overrides: list[str] | None, presets: dict, empty: Callable, check: Callable):
    """`load_config` for any config dataclass: a name in `presets`, or a file on top of its `preset`
    (or of `empty()`), then the --set overrides, then `check`. `lens rl` reads its configs with it."""
    if spec in presets:
        cfg = get_preset(spec, presets)
    else:
        data = read_config_file(spec, presets)
        base = data.get("preset") or ""
        cfg = get_preset(base, presets) if base else empty()
        apply_dict(cfg, data)
    return check(apply_overrides(cfg, overrides or []))


def read_config_file(spec: str, presets) -> dict:
    """The nested dict of a .json/.toml CONFIG file (`presets` only name the alternatives in the error)."""
    path = Path(spec)
    if path.suffix not in (".json", ".toml") or not path.is_file():
        raise LensError(
            f"CONFIG {spec!r} is neither a preset ({', '.join(presets)}) nor an existing .json/.toml file"
        )
    if path.suffix == ".json":
        try:
            return json.loads(path.read_text())
        except ValueError as err:
            raise LensError(f"{path} is not valid JSON ({err})") from None
    import tomllib

    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise LensError(f"{path} is not valid TOML ({err})") from None
