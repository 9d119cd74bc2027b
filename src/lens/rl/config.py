"""Typed `lens rl` configuration: one dataclass per concern, presets, and the run's training view.

An RL run is described by an `RLConfig`; `lens rl` writes the resolved one to RUN_DIR/rl.json, itself a
valid CONFIG argument. `--set section.field=value` overrides are type-checked by the training engine's
machinery (`lens.train.config`). Presets:

- `debug`: a tiny random base pipeline written to RUN_DIR/base, 64x64 and 48x80 groups, Nano-Eval
  prompts; seconds per step on one CPU (tests, CI). Pass a reward (`--reward module:function`).
- `lens`: the paper's recipe (REFERENCE 10): LoRA rank 64 / alpha 128, 180 steps of 48 prompts x 24
  images at the nine 1024^2-area buckets, AdamW LR 3e-4, weight decay 1e-4, KL weight 1e-4, beta 1.

`training_view` turns an RL config into a training-engine `Config` (the base as `model.init_from` and
`encoders.source`, the adapter's fields) written as RUN_DIR/config.json, so `lens export RUN OUT`
reads an RL run exactly as it reads a LoRA training run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from lens.resolution import parse_size
from lens.train.config import AdamWConfig, CheckpointConfig, SavedConfig
from lens.train.posttrain import LENS_SIZES, NANO_EVAL_PROMPTS, REWRITES, TINY, LogConfig, RunConfig, check


@dataclass
class PolicyConfig:
    """The base (frozen reference policy, and the source of the frozen VAE and LM) and its LoRA."""

    base: str = ""  # pipeline folder (released, `lens export`ed, `lens create-tiny`); "tiny" for tests
    lora_rank: int = 64
    lora_alpha: float = 128.0  # scale alpha / rank
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("attention", "mlp")


@dataclass
class RolloutConfig:
    """Which prompts, how many images, and how they are sampled (Euler ODE, `lens.sampling.euler`)."""

    # a .txt file (one prompt per line), a .jsonl file ({"prompt": ..., ...} per line; the whole object
    # is the prompt's metadata for the reward), or "nano-eval" (the Nano-Eval suite)
    prompts: str = ""
    prompts_per_step: int = 48
    group_size: int = 24  # images per prompt; rewards are normalised within each group
    sizes: tuple[str, ...] = ("1024x1024",)  # HxW; each group draws one (mixed-resolution groups)
    steps: int = 20  # Euler steps
    guidance: float = 1.0  # CFG scale; <= 1 samples the conditional velocity the loss trains
    batch: int = 8  # images per denoiser forward, in rollouts and in the loss
    max_text_tokens: int = 512
    # none, or the caption style of the nano reasoner's rewrite of each prompt (posttrain.REWRITES)
    rewrite: str = "none"


@dataclass
class NFTConfig:
    """DiffusionNFT (REFERENCE 10): the loss, the reward normalisation and the old policy's schedule."""

    beta: float = 1.0  # v+ = (1 - beta) v_old + beta v_theta, v- = (1 + beta) v_old - beta v_theta
    kl_weight: float = 1e-4  # weight of ||v_theta - v_ref||^2 (v_ref: the base, adapter off)
    std_eps: float = 1e-6  # floor of Z, the std of all the step's rewards
    # old policy (samples the rollouts, gives v_old): every `old_every` steps,
    # old <- old_decay * old + (1 - old_decay) * theta; 0 and 1 = the current policy at every step
    old_every: int = 1
    old_decay: float = 0.0


@dataclass
class RLConfig(SavedConfig):
    preset: str = ""
    run_dir: str = ""  # default: runs/rl-<preset>
    reward: str = ""  # lens.rewards spec: nano-eval | judge | module:function
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    nft: NFTConfig = field(default_factory=NFTConfig)
    optim: AdamWConfig = field(default_factory=lambda: AdamWConfig(lr=3e-4, weight_decay=1e-4))
    run: RunConfig = field(default_factory=RunConfig)
    checkpoint: CheckpointConfig = field(default_factory=lambda: CheckpointConfig(interval=20, keep=3))
    log: LogConfig = field(default_factory=LogConfig)

    def sizes(self) -> list[tuple[int, int]]:
        return [parse_size(s, "rollout.sizes") for s in self.rollout.sizes]


def validate(cfg: RLConfig) -> RLConfig:
    """Every check a type cannot express, each failure one LensError line naming the field."""
    r, n = cfg.rollout, cfg.nft
    check(
        cfg,
        [
            (bool(cfg.policy.base), "policy.base is empty; give the pipeline folder to start from (or tiny)"),
            (cfg.policy.lora_rank >= 1, "policy.lora_rank must be >= 1 (RL trains a LoRA adapter)"),
            (cfg.policy.lora_alpha >= 0, "policy.lora_alpha must be >= 0 (0 = policy.lora_rank)"),
            (0 <= cfg.policy.lora_dropout < 1, "policy.lora_dropout must be in [0, 1)"),
            (bool(cfg.policy.lora_targets), "policy.lora_targets is empty; e.g. attention;mlp"),
            (bool(r.prompts), "rollout.prompts is empty; give a .txt or .jsonl prompt file, or nano-eval"),
            (r.prompts_per_step >= 1, "rollout.prompts_per_step must be >= 1"),
            (r.group_size >= 2, "rollout.group_size must be >= 2: rewards are normalised within a group"),
            (bool(r.sizes), "rollout.sizes is empty; e.g. 1024x1024;768x1376"),
            (r.steps >= 1 and r.batch >= 1, "rollout.steps and rollout.batch must be >= 1"),
            (math.isfinite(r.guidance), "rollout.guidance must be a finite number (1 = no CFG)"),
            (r.max_text_tokens >= 1, "rollout.max_text_tokens must be >= 1"),
            (r.rewrite in REWRITES, f"rollout.rewrite must be one of {', '.join(REWRITES)}"),
            (math.isfinite(n.beta) and n.beta > 0, "nft.beta must be a positive number (the paper: 1)"),
            (math.isfinite(n.kl_weight) and n.kl_weight >= 0, "nft.kl_weight must be >= 0"),
            (n.std_eps > 0, "nft.std_eps must be > 0"),
            (n.old_every >= 1, "nft.old_every must be >= 1"),
            (0 <= n.old_decay < 1, "nft.old_decay must be in [0, 1)"),
        ],
    )
    cfg.sizes()  # each one HxW in multiples of 16
    return cfg


# ---------------------------------------------------------------------- presets
def debug() -> RLConfig:
    return RLConfig(
        preset="debug",
        policy=PolicyConfig(base=TINY, lora_rank=4, lora_alpha=4.0),
        rollout=RolloutConfig(
            prompts=NANO_EVAL_PROMPTS,
            prompts_per_step=2,
            group_size=4,
            sizes=("64x64", "48x80"),
            steps=4,
            batch=8,
            max_text_tokens=320,
        ),
        optim=AdamWConfig(lr=1e-3),
        run=RunConfig(steps=6, precision="fp32", activation_checkpointing=False, threads=1),
        checkpoint=CheckpointConfig(interval=3, keep=2),
        log=LogConfig(every=1, sample_every=6, sample_prompts=("a red circle", "two blue squares")),
    )


def lens() -> RLConfig:
    # REFERENCE 10. Not stated there: the sampler's step count (a second-order ODE sampler there, the
    # Euler loop here) and the old policy's schedule. 1:1 first: the size an export defaults to.
    return RLConfig(
        preset="lens",
        policy=PolicyConfig(base="", lora_rank=64, lora_alpha=128.0),
        rollout=RolloutConfig(
            prompts="",
            prompts_per_step=48,
            group_size=24,
            sizes=LENS_SIZES,
            steps=20,
            batch=8,
        ),
        nft=NFTConfig(beta=1.0, kl_weight=1e-4),
        optim=AdamWConfig(lr=3e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4),
        run=RunConfig(steps=180, precision="bf16", activation_checkpointing=True),
        log=LogConfig(
            every=1, sample_every=20, sample_prompts=("A red fox sitting in fresh snow at sunrise.",)
        ),
    )


PRESETS = {"debug": debug, "lens": lens}


def load_rl_config(spec: str, overrides: list[str] | None = None) -> RLConfig:
    """CONFIG = a preset name (debug, lens) or a .json/.toml file (a run's rl.json), plus --set overrides."""
    from lens.train.presets import build_config

    return build_config(spec, overrides, PRESETS, RLConfig, validate)


# ---------------------------------------------------------------------- the training engine's view
def training_view(cfg: RLConfig, base: Path, base_config: dict):
    """The training `Config` of this run (RUN_DIR/config.json): the LoRA on the base `base`, whose
    transformer config is `base_config`; `lens export` and `lens.export.load_run` read it."""
    from lens.train.config import Config, DataConfig, EncoderConfig, LogConfig, ModelConfig, TrainConfig
    from lens.train.posttrain import base_object_scale

    shape = ModelConfig().model_kwargs()  # the fields that describe the denoiser, not how it trains
    p = cfg.policy
    model = ModelConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in base_config.items() if k in shape},
        init_from=str(base), lora_rank=p.lora_rank, lora_alpha=p.lora_alpha,
        lora_dropout=p.lora_dropout, lora_targets=tuple(p.lora_targets),
    )  # fmt: skip
    r = cfg.rollout
    return Config(
        preset="",
        run_dir=cfg.run_dir,
        model=model,
        encoders=EncoderConfig(
            source=str(base), dtype=cfg.run.encoder_dtype, max_text_tokens=r.max_text_tokens
        ),
        # `lens train` on this file stops at once: an RL run has no data; the base's world is kept
        data=DataConfig(shards="", world_object_scale=base_object_scale(str(base))),
        train=TrainConfig(steps=cfg.run.steps, seed=cfg.run.seed, precision=cfg.run.precision),
        log=LogConfig(sample_size=r.sizes[0], sample_steps=r.steps, sample_guidance=r.guidance),
    )
