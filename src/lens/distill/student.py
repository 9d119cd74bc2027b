"""The student: its fixed steps, how it is sampled during training, and its export as a pipeline.

The student runs `student.steps` Euler steps without CFG on its own sigmas, shifted per resolution
with the same empirical mu as any Lens schedule. They live in its scheduler's config
(`lens.sampling.schedule.with_fixed_sigmas`), so `scheduler_sigmas` gives the trainer and the
exported `LensPipeline` the same steps at every size.

Training samples it as it will be used (DMD2's "backward simulation"): from noise, its own first i
Euler steps without a graph, then its velocity at step i, whose clean prediction x0 = x_t - sigma_i v
is the sample the losses act on. At i = steps - 1 that is exactly the image the pipeline returns.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from torch import Tensor

from lens.distill.config import DistillConfig, load_distill_config
from lens.distill.losses import x0_prediction
from lens.errors import LensError
from lens.sampling.euler import Conditions, denoiser_velocity, euler_sample
from lens.sampling.schedule import make_scheduler, scheduler_sigmas, with_fixed_sigmas
from lens.train.checkpoint import latest_checkpoint, list_checkpoints, load_dcp
from lens.train.posttrain import pipeline_folder


def student_scheduler(cfg: DistillConfig):
    return with_fixed_sigmas(make_scheduler(), cfg.student_sigmas())


def student_x0(
    student,
    scheduler,
    steps: int,
    index: int,
    noise: Tensor,
    text: Tensor,
    mask: Tensor | None,
    grid: tuple[int, int],
    autocast: contextlib.AbstractContextManager | None = None,
    places: Tensor | None = None,
) -> Tensor:
    """The student's clean prediction (B, N, C) at its step `index` (0-based) from `noise` (B, N, C):
    its first `index` steps without a graph, the last velocity with one when gradients are on.
    `places` (B, S, 2): the text's grounded places, for a grounded model."""
    sigmas = scheduler_sigmas(scheduler, steps, grid[0] * grid[1], device=noise.device)
    timesteps = scheduler.timesteps

    def velocity(x: Tensor, embeds: Tensor, m: Tensor | None, t: Tensor, places=None) -> Tensor:
        return denoiser_velocity(student, x, embeds, m, t, grid, autocast=autocast, places=places)

    with torch.no_grad():
        text_only = Conditions(text, mask, text[:, :0], None, places)
        x = euler_sample(velocity, noise, scheduler, text_only, 1.0, timesteps=timesteps[:index])
    v = velocity(x, text, mask, timesteps[index], places)
    return x0_prediction(x, sigmas[index].expand(x.shape[0]), v)


def teacher_folder(cfg: DistillConfig, run_dir: Path) -> Path:
    """cfg.teacher as a pipeline folder ("tiny": a seeded random one in RUN_DIR/teacher)."""
    return pipeline_folder(cfg.teacher, run_dir / "teacher", "teacher", cfg.sizes()[0], cfg.run.seed)


def check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LensError(f"out={out} exists and is not an empty folder; choose a new output folder")


def export_student(run_dir: str | Path, out: str | Path | None = None, step: int | None = None) -> Path:
    """The student of RUN_DIR's checkpoint (the latest, or `step`) as a pipeline folder at `out`
    (default: the run's own `out`): the teacher's frozen components, the student's transformer, its
    sigmas in the scheduler config, and model_index.json defaults of its step count and guidance 1."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from lens.export import cast_weights, write_pipeline
    from lens.model.transformer import LensTransformer2DModel

    run_dir = Path(run_dir)
    cfg = load_distill_config(str(run_dir / "distill.json"))
    out = Path(out or cfg.out)
    check_out(out)
    path = latest_checkpoint(run_dir) if step is None else dict(list_checkpoints(run_dir)).get(step)
    if path is None:
        raise LensError(f"{run_dir} has no checkpoint{'' if step is None else f' for step {step}'}")
    teacher = teacher_folder(cfg, run_dir)
    model = LensTransformer2DModel.from_pretrained(str(teacher / "transformer"), torch_dtype=torch.float32)
    state = {"model": {f"student.{k}": v for k, v in model.state_dict().items()}}
    load_dcp(state, path)
    model.load_state_dict({k.removeprefix("student."): v for k, v in state["model"].items()})
    dtype = "bfloat16" if cfg.run.precision == "bf16" else "float32"
    steps = cfg.student.steps
    write_pipeline(
        teacher, out, cast_weights(model.eval(), dtype), default_steps=steps, default_guidance_scale=1.0
    )
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(str(out / "scheduler"))
    with_fixed_sigmas(scheduler, cfg.student_sigmas()).save_pretrained(str(out / "scheduler"))
    info = {
        "run_dir": str(run_dir.resolve()),
        "step": int(path.name.split("_")[1]),
        "distilled_from": str(teacher),
        "steps": steps,
        "sigmas": cfg.student_sigmas(),
        "dtype": dtype,
    }
    (out / "lens_training.json").write_text(json.dumps(info, indent=2) + "\n")
    return out
