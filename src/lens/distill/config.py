"""Typed `lens distill` configuration: one dataclass per concern, presets, and the student's steps.

A distillation run is described by a `DistillConfig`; `lens distill` writes the resolved one to
RUN_DIR/distill.json, itself a valid `--config`. `--set section.field=value` overrides are type-checked
by the training engine's machinery (`lens.train.config`). Presets:

- `debug`: a tiny random teacher written to RUN_DIR/teacher, Nano-Eval prompts at 64x64 and 48x80,
  large learning rates; about half a second per step on one CPU (tests, CI).
- `lens`: the paper's recipe (REFERENCE 10): a 4-step student, decoupled DMD with the CFG-augmented
  term at w = 5, lambda_d 0.1, lambda_g 0.001, approximate R1 (gamma 1.0, alpha 0.1), 4 fake-score /
  discriminator updates per student update, the fake score pulled toward the student by 0.03 after
  each, AdamW (0.0, 0.9) at 5e-7 (student, fake score) and 1e-4 (discriminator head), up to 1K steps at
  the nine 1024^2-area buckets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lens.resolution import parse_size
from lens.train.config import AdamWConfig, CheckpointConfig, SavedConfig
from lens.train.posttrain import LENS_SIZES, NANO_EVAL_PROMPTS, REWRITES, TINY, LogConfig, RunConfig, check

ADVERSARIAL_LOSSES = ("non-saturating", "hinge")


@dataclass
class StudentConfig:
    steps: int = 4  # Euler steps of the student, without CFG
    # its fixed steps' sigmas before the resolution shift, descending in (0, 1]; () = linspace(1, 1/steps,
    # steps), the pipeline's own. Shifted per resolution with the same empirical mu as any Lens schedule.
    sigmas: tuple[float, ...] = ()


@dataclass
class DataConfig:
    # a .txt file (one prompt per line), a .jsonl file ({"prompt": ...} per line) or nano-eval
    prompts: str = ""
    batch: int = 4  # images per update (all at one size)
    sizes: tuple[str, ...] = ("1024x1024",)  # HxW buckets; each step draws one. The first: grids, export
    max_text_tokens: int = 512
    # none, or the caption style of the nano reasoner's rewrite of each prompt (posttrain.REWRITES)
    rewrite: str = "none"


@dataclass
class DMDConfig:
    """Decoupled DMD (REFERENCE 10): the distribution-matching (DM) and CFG-augmentation (CA) terms."""

    guidance: float = 5.0  # w: the teacher's CFG scale in the CA term and in its real samples
    weight: float = 0.1  # lambda_d, on DM + CA in the student's loss
    # noise levels (sigma ranges, uniform) of the DM term, the fake score's loss and the discriminator's
    # input, and of the CA term: each term draws its own
    sigmas: tuple[float, ...] = (0.02, 0.98)
    ca_sigmas: tuple[float, ...] = (0.02, 0.98)
    fake_updates: int = 4  # fake-score / discriminator updates per student update (TTUR)
    fake_pull: float = 0.03  # after each student update, phi <- (1 - pull) phi + pull theta


@dataclass
class AdversarialConfig:
    """A small head on the frozen teacher's image-stream features of noised images."""

    loss: str = "non-saturating"  # non-saturating | hinge
    weight: float = 1e-3  # lambda_g, on the adversarial term in the student's loss
    blocks: tuple[int, ...] = ()  # teacher blocks read; () = the last block of each quarter of its depth
    hidden: int = 256  # the head's width per block
    r1_gamma: float = 1.0  # approximate R1: gamma * mean (D(x) - D(x + alpha * eps))^2 on real x
    r1_alpha: float = 0.1
    real_steps: int = 20  # "real" images: the teacher's own samples, this many Euler steps at dmd.guidance


@dataclass
class OptimConfig(AdamWConfig):
    """One AdamW over three parameter groups: `lr` the student's, then the fake score's and the head's."""

    fake_lr: float = 5e-7
    head_lr: float = 1e-4


@dataclass
class DistillConfig(SavedConfig):
    preset: str = ""
    run_dir: str = ""  # default: runs/distill-<name of out>
    teacher: str = ""  # pipeline folder (released, `lens export`ed, `lens create-tiny`); "tiny" for tests
    out: str = ""  # the exported student's pipeline folder, written when the run finishes
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    dmd: DMDConfig = field(default_factory=DMDConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-7, betas=(0.0, 0.9)))
    run: RunConfig = field(default_factory=lambda: RunConfig(steps=1000))
    checkpoint: CheckpointConfig = field(default_factory=lambda: CheckpointConfig(interval=100, keep=3))
    log: LogConfig = field(default_factory=LogConfig)

    def sizes(self) -> list[tuple[int, int]]:
        return [parse_size(s, "data.sizes") for s in self.data.sizes]

    def student_sigmas(self) -> list[float]:
        """The student's unshifted sigmas (what its scheduler config stores)."""
        from lens.sampling.schedule import base_sigmas

        return list(self.student.sigmas) or base_sigmas(self.student.steps).tolist()


def _range_ok(pair: tuple[float, ...]) -> bool:
    return len(pair) == 2 and 0 < pair[0] <= pair[1] <= 1


def validate(cfg: DistillConfig) -> DistillConfig:
    """Every check a type cannot express, each failure one LensError line naming the field."""
    s, d, m, a, o = cfg.student, cfg.data, cfg.dmd, cfg.adversarial, cfg.optim
    sig = list(s.sigmas)
    descending = all(x > y for x, y in zip(sig, sig[1:])) and all(0 < x <= 1 for x in sig)
    check(
        cfg,
        [
            (bool(cfg.teacher), "teacher is empty; give the pipeline folder to distil (or tiny)"),
            (bool(cfg.out), "out is empty; give the folder the student's pipeline is written to"),
            (s.steps >= 1, "student.steps must be >= 1"),
            (not sig or (len(sig) == s.steps and descending),
             f"student.sigmas must be {s.steps} values (student.steps), descending in (0, 1]; or empty"),
            (bool(d.prompts), "data.prompts is empty; give a .txt or .jsonl prompt file, or nano-eval"),
            (d.batch >= 1 and d.max_text_tokens >= 1, "data.batch and data.max_text_tokens must be >= 1"),
            (bool(d.sizes), "data.sizes is empty; e.g. 1024x1024;768x1376"),
            (d.rewrite in REWRITES, f"data.rewrite must be one of {', '.join(REWRITES)}"),
            (math.isfinite(m.guidance) and m.guidance >= 1, "dmd.guidance must be a finite number >= 1"),
            (math.isfinite(m.weight) and m.weight >= 0, "dmd.weight must be >= 0"),
            (_range_ok(m.sigmas) and _range_ok(m.ca_sigmas),
             "dmd.sigmas and dmd.ca_sigmas must each be two values lo,hi with 0 < lo <= hi <= 1"),
            (m.fake_updates >= 1, "dmd.fake_updates must be >= 1"),
            (0 <= m.fake_pull <= 1, "dmd.fake_pull must be in [0, 1]"),
            (a.loss in ADVERSARIAL_LOSSES, f"adversarial.loss must be one of {', '.join(ADVERSARIAL_LOSSES)}"),
            (math.isfinite(a.weight) and a.weight >= 0, "adversarial.weight must be >= 0"),
            (all(b >= 0 for b in a.blocks), "adversarial.blocks must be block indices >= 0"),
            (a.hidden >= 1 and a.real_steps >= 1, "adversarial.hidden and adversarial.real_steps must be >= 1"),
            (a.r1_gamma >= 0 and a.r1_alpha >= 0, "adversarial.r1_gamma and r1_alpha must be >= 0"),
            (o.fake_lr > 0 and o.head_lr > 0, "optim.fake_lr and optim.head_lr must be > 0"),
        ],
    )  # fmt: skip
    cfg.sizes()  # each one HxW in multiples of 16
    return cfg


# ---------------------------------------------------------------------- presets
def debug() -> DistillConfig:
    return DistillConfig(
        preset="debug",
        teacher=TINY,
        data=DataConfig(prompts=NANO_EVAL_PROMPTS, batch=8, sizes=("64x64", "48x80"), max_text_tokens=320),
        dmd=DMDConfig(guidance=5.0),
        adversarial=AdversarialConfig(hidden=16, real_steps=12),
        # the tiny student comes closer to the teacher for 30+ steps at 1e-4; at 2e-4 it stalls after
        # about 15, at 3e-4 it overshoots after about 10 (tests/test_distill_loop.py)
        optim=OptimConfig(lr=1e-4, betas=(0.0, 0.9), fake_lr=1e-3, head_lr=1e-3),
        run=RunConfig(steps=4, precision="fp32", activation_checkpointing=False, threads=1),
        checkpoint=CheckpointConfig(interval=2, keep=2),
        log=LogConfig(every=1, sample_every=4, sample_prompts=("a red circle", "two blue squares")),
    )


def lens() -> DistillConfig:
    # REFERENCE 10. Not stated there: the noise ranges of the terms, the discriminator's features and
    # head, where its real images come from (100K curated images there; the teacher's samples here),
    # gradient clipping, weight decay. Batch 4 per process (the paper: 8 GPUs x 4).
    return DistillConfig(
        preset="lens",
        data=DataConfig(batch=4, sizes=LENS_SIZES),
        dmd=DMDConfig(guidance=5.0, weight=0.1, fake_updates=4, fake_pull=0.03),
        adversarial=AdversarialConfig(weight=1e-3, r1_gamma=1.0, r1_alpha=0.1, real_steps=20),
        optim=OptimConfig(lr=5e-7, betas=(0.0, 0.9), fake_lr=5e-7, head_lr=1e-4),
        run=RunConfig(steps=1000, precision="bf16", activation_checkpointing=True),
        checkpoint=CheckpointConfig(interval=100, keep=3),
        log=LogConfig(
            every=1, sample_every=100, sample_prompts=("A red fox sitting in fresh snow at sunrise.",)
        ),
    )


PRESETS = {"debug": debug, "lens": lens}


def load_distill_config(spec: str, overrides: list[str] | None = None) -> DistillConfig:
    """--config = a preset name (debug, lens) or a .json/.toml file (a run's distill.json), plus --set."""
    from lens.train.presets import build_config

    return build_config(spec, overrides, PRESETS, DistillConfig, validate)
