"""The student against its teacher on fixed prompts and noise: sample grids and their latent gap.

Both draw from the same starting noise (`log.sample_seed`) at the first of `data.sizes`: the student
its own steps without CFG, the teacher `adversarial.real_steps` Euler steps at `dmd.guidance` (once;
it is frozen). The grid RUN_DIR/samples/step_XXXXXXXX.png puts the student's row above the teacher's;
the gap is the mean squared difference of their latents, logged as `eval/teacher_gap`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from lens.train.previews import sample_latents, write_preview


class Comparison:
    def __init__(
        self, cfg, captions, teacher, student, scheduler, encoders, device, autocast_dtype, grounded=False
    ):
        self.cfg, self.teacher, self.student, self.scheduler = cfg, teacher, student, scheduler
        self.captions = captions  # what each of `log.sample_prompts` is conditioned on (`sample_captions`)
        self.encoders, self.device, self.autocast_dtype = encoders, device, autocast_dtype
        self.grounded = grounded  # the teacher was trained grounded: its prompts' places go in
        self._texts: list[Tensor] | None = None
        self._places: list[Tensor] | None = None
        self._teacher: Tensor | None = None

    def latents(self) -> tuple[Tensor, Tensor]:
        """(student, teacher) latents, each (P, 128, h, w)."""
        cfg = self.cfg
        h, w = cfg.sizes()[0]
        grid = (h // 16, w // 16)
        if self._texts is None:
            self._texts = self.encoders.encode_text(self.captions)
            self._places = self.encoders.prompt_places(self.captions, self.grounded)
        args = (cfg.log.sample_seed, self.device, self.autocast_dtype)
        if self._teacher is None:
            steps, w = cfg.adversarial.real_steps, cfg.dmd.guidance
            self._teacher = sample_latents(
                self.teacher, self._texts, grid, steps, w, *args, places=self._places
            )
        student = sample_latents(
            self.student, self._texts, grid, cfg.student.steps, 1.0, *args, scheduler=self.scheduler,
            places=self._places,
        )  # fmt: skip
        return student, self._teacher

    def gap(self, latents: tuple[Tensor, Tensor] | None = None) -> float:
        student, teacher = latents or self.latents()
        return float((student - teacher).pow(2).mean())

    def write(self, run_dir: Path, step: int, metrics) -> tuple[Path, float]:
        """The grid at `step` (file and TensorBoard) and the gap (metrics); returns (path, gap)."""
        latents = self.latents()
        gap = self.gap(latents)
        columns = len(self.cfg.log.sample_prompts)
        images = self.encoders.decode_latents(torch.cat(latents))
        path = write_preview(run_dir, step, images, metrics, columns=columns)
        metrics.scalars(step, {"eval/teacher_gap": gap})
        return path, gap
