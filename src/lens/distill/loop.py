"""The `lens distill` loop (REFERENCE 10): a few-step student from a frozen teacher with decoupled DMD
and an adversarial term, on the training engine's checkpoints, metrics and faults.

Three copies of the denoiser: the teacher (frozen), the student theta and the fake score phi (both
start as the teacher), and a small discriminator head on the teacher's features (`critic.py`). One
step, on `data.batch` prompts at one size drawn from `data.sizes`:

1. "real" images: the teacher's own samples, `adversarial.real_steps` Euler steps at CFG `dmd.guidance`;
2. `dmd.fake_updates` times (TTUR): a student sample without a graph; the fake score's flow-matching
   loss on it, and the head's discriminator loss (real vs fake, plus gamma times approximate R1);
   one AdamW step of phi and the head;
3. once: a student sample with a graph; loss lambda_d (DM + CA) + lambda_g adversarial (`losses.py`);
   one AdamW step of theta;
4. phi <- (1 - dmd.fake_pull) phi + dmd.fake_pull theta.

All randomness comes from generators seeded by (seed, step, what, index), so `--resume` continues
bitwise. Sample grids put the student above the teacher on fixed prompts and noise (`grids.py`).
When the run finishes the student is exported to `out` (`student.export_student`). The run itself
(resume, the loop, SIGTERM) is `lens.train.postrun.PostTrainer`'s. One process (no FSDP yet).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from lens.distill.config import DistillConfig
from lens.distill.critic import FeatureHead, feature_blocks, teacher_features
from lens.distill.grids import Comparison
from lens.distill.losses import (
    approximate_r1,
    denoising_loss,
    discriminator_loss,
    dmd_loss,
    generator_loss,
    matching_gradient,
    pull_toward,
    x0_prediction,
)
from lens.distill.student import check_out, export_student, student_scheduler, student_x0, teacher_folder
from lens.export import cast_weights
from lens.latents import to_tokens
from lens.model.flops import forward_flops
from lens.sampling.euler import denoiser_velocity
from lens.sampling.guidance import apply_cfg
from lens.sampling.schedule import noised
from lens.text.grounding import pad_places
from lens.train.config import Config, EncoderConfig, ModelConfig
from lens.train.encoders import FrozenEncoders
from lens.train.faults import disk_errors
from lens.train.logs import log
from lens.train.metrics import Metrics, timer
from lens.train.postrun import PostTrainer
from lens.train.posttrain import (
    base_object_scale,
    derived_seed,
    read_prompts,
    rewrite_prompts,
    sample_captions,
)
from lens.train.previews import pad_texts, sample_latents


def run_dir_of(cfg: DistillConfig) -> Path:
    return Path(cfg.run_dir or f"runs/distill-{Path(cfg.out).name or 'run'}")


@dataclass
class Batch:
    """A step's prompts at its size, shared by its updates."""

    text: Tensor  # (B, S, L, D)
    mask: Tensor  # (B, S) bool
    grid: tuple[int, int]
    real: Tensor  # (B, N, C): the teacher's samples
    places: Tensor | None  # (B, S, 2) grounded places of the text, for a grounded teacher; else None


class DistillTrainer(PostTrainer):
    command = "lens distill"

    def __init__(self, cfg: DistillConfig, resume: bool = False):
        self.cfg = cfg
        self.check_start(run_dir_of(cfg), resume)
        check_out(Path(cfg.out))
        scale = base_object_scale(cfg.teacher)
        prompts = rewrite_prompts(
            read_prompts(cfg.data.prompts, "data.prompts"), cfg.data.rewrite, "data.prompts", scale
        )
        self.prompts = [p.conditioning for p in prompts]
        captions = sample_captions(cfg.log.sample_prompts, cfg.data.rewrite, scale)  # fails before the run
        device = self.open_run(cfg.run)

        # the teacher, its frozen encoders, and the three trained modules that start from it
        from lens.model.transformer import LensTransformer2DModel
        from lens.train.parallelize import apply_ac

        folder = teacher_folder(cfg, self.run_dir)
        teacher = LensTransformer2DModel.from_pretrained(
            str(folder / "transformer"), torch_dtype=torch.float32
        )
        tc = teacher.config
        self.grounded = bool(tc.get("text_grounding", False))  # the teacher was trained grounded
        view = Config(
            model=ModelConfig(
                enc_hidden_dim=tc.enc_hidden_dim, selected_layer_index=tuple(tc.selected_layer_index)
            ),
            encoders=EncoderConfig(
                source=str(folder), dtype=cfg.run.encoder_dtype, max_text_tokens=cfg.data.max_text_tokens
            ),
        )
        self.encoders = FrozenEncoders(view, device)
        self.blocks = feature_blocks(cfg.adversarial.blocks, tc.num_layers)
        student, fake = copy.deepcopy(teacher).train(), copy.deepcopy(teacher).train()
        torch.manual_seed(cfg.run.seed)  # the head's initialisation
        head = FeatureHead(
            tc.num_attention_heads * tc.attention_head_dim, len(self.blocks), cfg.adversarial.hidden
        )
        teacher.requires_grad_(False).eval()
        if cfg.run.activation_checkpointing:
            for model in (student, fake, teacher):
                apply_ac(model)
        self.teacher = cast_weights(
            teacher.to(device), "bfloat16" if self.bf16 and device.type == "cuda" else "float32"
        )
        self.trained = nn.ModuleDict({"student": student, "fake": fake, "head": head}).to(device)
        self.student, self.fake, self.head = student, fake, head
        o = cfg.optim
        groups = [(student, o.lr), (fake, o.fake_lr), (head, o.head_lr)]
        self.optim = torch.optim.AdamW(
            [{"params": list(m.parameters()), "lr": lr} for m, lr in groups],
            betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay,
        )  # fmt: skip
        self.scheduler = student_scheduler(cfg)
        self.comparison = Comparison(
            cfg, captions, self.teacher, student, self.scheduler, self.encoders, device, self.autocast_dtype,
            self.grounded,
        )  # fmt: skip
        self.out: Path | None = None  # the exported student, once the run is done
        self.resume_state(resume)
        cfg.save(self.run_dir / "distill.json")
        self.metrics = Metrics(self.run_dir, cfg.log, self.info, cfg.run.steps, self.step)
        log.info(
            "distill %s | teacher %s | %d-step student | %d prompts | batch %d at %s | blocks %s | on %s",
            self.run_dir, folder, cfg.student.steps, len(self.prompts), cfg.data.batch,
            ", ".join(cfg.data.sizes), self.blocks, device,
        )  # fmt: skip

    # ------------------------------------------------------------------ helpers
    def generator(self, what: str, index: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(derived_seed(self.cfg.run.seed, self.step, what, index))

    def levels(self, gen: torch.Generator, bounds: tuple[float, ...], n: int) -> Tensor:
        """(n,) noise levels uniform in [lo, hi], on the device."""
        lo, hi = bounds
        return (lo + (hi - lo) * torch.rand(n, generator=gen)).to(self.info.device)

    def randn(self, gen: torch.Generator, like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=gen).to(like.device)

    def velocity(self, model, x_t: Tensor, sigma: Tensor, b: Batch, conditional: bool = True) -> Tensor:
        """One branch's velocity: the batch's text (and places), or zero text tokens."""
        text, mask, places = (b.text, b.mask, b.places) if conditional else (b.text[:, :0], None, None)
        return denoiser_velocity(
            model, x_t, text, mask, sigma * 1000.0, b.grid, autocast=self.autocast(), places=places
        )

    def features(self, x_t: Tensor, sigma: Tensor, b: Batch) -> list[Tensor]:
        return teacher_features(
            self.teacher, self.blocks, x_t, sigma, b.text, b.mask, b.grid, self.autocast(), b.places
        )

    def sample(self, b: Batch, gen: torch.Generator) -> Tensor:
        """A student sample (B, N, C) at a step index drawn from `gen` (a graph when gradients are on)."""
        steps = self.cfg.student.steps
        noise = torch.randn(*b.real.shape, generator=gen).to(self.info.device)
        index = int(torch.randint(steps, (1,), generator=gen))
        self._indexes.append(index)
        return student_x0(
            self.student, self.scheduler, steps, index, noise, b.text, b.mask, b.grid, self.autocast(),
            b.places,
        )  # fmt: skip

    def optimise(self, loss: Tensor, module: nn.Module) -> float:
        """Backward into `module`'s parameters only, clip, one AdamW step; returns the gradient norm."""
        params = list(module.parameters())
        torch.autograd.backward(loss, inputs=params)
        return self.clip_and_step(params, float(loss.detach()), "a distillation loss")

    # ------------------------------------------------------------------ one step
    def batch(self) -> Batch:
        """The step's prompts (a fresh permutation, repeated when the batch wants more) at one size,
        with the teacher's samples of them."""
        cfg, n = self.cfg, self.cfg.data.batch
        gen = self.generator("plan")
        repeats = -(-n // len(self.prompts))
        order = torch.cat([torch.randperm(len(self.prompts), generator=gen) for _ in range(repeats)])[:n]
        sizes = cfg.sizes()
        h, w = sizes[int(torch.randint(len(sizes), (1,), generator=gen))]
        captions = [self.prompts[i] for i in order.tolist()]
        texts = self.encoders.encode_text(captions)
        places = self.encoders.prompt_places(captions, self.grounded)
        text, mask = pad_texts(texts)
        grid = (h // 16, w // 16)
        real = sample_latents(
            self.teacher, texts, grid, cfg.adversarial.real_steps, cfg.dmd.guidance,
            derived_seed(cfg.run.seed, self.step, "real"), self.info.device, self.autocast_dtype,
            places=places,
        )  # fmt: skip
        padded = None if places is None else pad_places(places, text.shape[1]).to(text.device)
        return Batch(text, mask, grid, to_tokens(real), padded)

    def noise_level(self, gen: torch.Generator, bounds, x: Tensor) -> tuple[Tensor, Tensor]:
        """(sigma (B,), x noised at it with fresh noise)."""
        s = self.levels(gen, bounds, x.shape[0])
        return s, noised(x, self.randn(gen, x), s)

    def guidance_update(self, b: Batch, k: int) -> dict:
        """The fake score's flow matching and the head's discriminator loss on a fresh student sample;
        one AdamW step of both."""
        m, a = self.cfg.dmd, self.cfg.adversarial
        gen = self.generator("guidance", k)
        with torch.no_grad():
            x = self.sample(b, gen)
        s, noise = self.levels(gen, m.sigmas, x.shape[0]), self.randn(gen, x)
        v = self.velocity(self.fake, noised(x, noise, s), s, b)
        fake_loss = denoising_loss(v, x, noise)
        # real and fake at the same noise levels; the perturbed real input for approximate R1
        s = self.levels(gen, m.sigmas, x.shape[0])
        real_t, fake_t = noised(b.real, self.randn(gen, x), s), noised(x, self.randn(gen, x), s)
        perturbed = real_t + a.r1_alpha * self.randn(gen, x)
        with torch.no_grad():
            feats = [self.features(z, s, b) for z in (real_t, fake_t, perturbed)]
        d_real, d_fake, d_perturbed = (self.head(f) for f in feats)
        d_loss = discriminator_loss(d_real, d_fake, a.loss)
        r1 = approximate_r1(d_real, d_perturbed)
        self.optimise(fake_loss + d_loss + a.r1_gamma * r1, nn.ModuleList([self.fake, self.head]))
        values = (fake_loss, d_loss, r1, d_real.mean(), d_fake.mean())
        return dict(
            zip(("fake_loss", "d_loss", "r1", "d_real", "d_fake"), (float(v.detach()) for v in values))
        )

    def student_update(self, b: Batch) -> dict:
        """Decoupled DMD (DM + CA terms) and the adversarial term on a student sample with a graph;
        one AdamW step of the student."""
        m, a = self.cfg.dmd, self.cfg.adversarial
        gen = self.generator("student")
        x = self.sample(b, gen)
        xd = x.detach()
        with torch.no_grad():
            s, x_t = self.noise_level(gen, m.sigmas, xd)  # DM: the fake score vs the teacher
            x0_fake = x0_prediction(x_t, s, self.velocity(self.fake, x_t, s, b))
            x0_cond = x0_prediction(x_t, s, self.velocity(self.teacher, x_t, s, b))
            g_dm = matching_gradient(xd, x0_fake, x0_cond)
            s, x_t = self.noise_level(gen, m.ca_sigmas, xd)  # CA: the teacher vs itself with CFG
            v_cond = self.velocity(self.teacher, x_t, s, b)
            v_null = self.velocity(self.teacher, x_t, s, b, conditional=False)
            x0_guided = x0_prediction(x_t, s, apply_cfg(v_cond, v_null, m.guidance))
            g_ca = matching_gradient(xd, x0_prediction(x_t, s, v_cond), x0_guided)
        dm, ca = dmd_loss(x, g_dm), dmd_loss(x, g_ca)
        s, x_t = self.noise_level(gen, m.sigmas, x)
        adv = generator_loss(self.head(self.features(x_t, s, b)), a.loss)
        loss = m.weight * (dm + ca) + a.weight * adv
        norm = self.optimise(loss, self.student)
        values = dict(zip(("loss", "dm", "ca", "adv"), (float(t.detach()) for t in (loss, dm, ca, adv))))
        return {**values, "grad_norm": norm}

    def counts(self, b: Batch) -> list[float]:
        """[images, image tokens, text tokens, padding tokens, FLOPs] of a step, for the throughput log.
        Forwards with the prompt: the real samples' Euler steps, per update the student's steps up to
        its index, the fake score's forward and backward (guidance updates) or forward (the student's),
        the teacher's three feature reads (a share of a forward) or DM/CA forwards plus a feature read
        with its backward; without: the real samples' CFG branch and the CA term's null branch."""
        cfg, config = self.cfg, self.teacher.config
        real = cfg.adversarial.real_steps
        share = (self.blocks[-1] + 1) / config.num_layers  # the feature read stops after its last block
        per_guidance = 3 + 3 * share  # the fake score's forward and backward, three feature reads
        per_student = 2 + 1 + 2 + 3 * share  # its backward, the fake score, DM and CA, a read with backward
        sampled = sum(i + 1 for i in self._indexes)  # the student's steps up to each sample
        with_text = real + sampled + cfg.dmd.fake_updates * per_guidance + per_student
        without = (real if cfg.dmd.guidance > 1 else 0) + 1
        n, n_img, s = b.text.shape[0], b.grid[0] * b.grid[1], b.text.shape[1]
        flops = n * (with_text * forward_flops(config, n_img, s) + without * forward_flops(config, n_img, 0))
        valid = float(b.mask.sum())
        return [n, n * n_img, valid, n * s - valid, flops]

    def one_step(self) -> dict:
        t0 = timer()
        self._indexes: list[int] = []
        b = self.batch()
        rows = [self.guidance_update(b, k) for k in range(self.cfg.dmd.fake_updates)]
        row = self.student_update(b)
        pull_toward(list(self.fake.parameters()), list(self.student.parameters()), self.cfg.dmd.fake_pull)
        row.update({k: float(np.mean([r[k] for r in rows])) for k in rows[0]})
        self.step += 1
        extra = {k: v for k, v in row.items() if k not in ("loss", "grad_norm")}
        lr = self.cfg.optim.lr
        self.metrics.record(
            self.step, row["loss"], row["grad_norm"], lr, False, self.counts(b), timer() - t0, extra
        )
        return {"lr": lr, **row}

    # ------------------------------------------------------------------ grids, the end of the run
    def preview(self) -> None:
        if self.cfg.log.sample_prompts:
            path, gap = self.comparison.write(self.run_dir, self.step, self.metrics)
            log.info("wrote %s | teacher gap %.4f", path, gap)

    def finish(self) -> None:
        self.out = export_student(self.run_dir)
        log.info("wrote the %d-step student to %s", self.cfg.student.steps, self.out)


def distill(cfg: DistillConfig, resume: bool = False) -> dict:
    """Distil `cfg.teacher` into a `cfg.student.steps`-step student and export it to `cfg.out`; returns
    {"step", "history": one dict per step (loss, grad_norm, lr, dm, ca, adv, fake_loss, d_loss, r1,
    d_real, d_fake), "stopped": "SIGTERM" when a stop request ended it early, "out": the exported folder
    (None when stopped)}."""
    with disk_errors(run_dir_of(cfg)):
        trainer = DistillTrainer(cfg, resume)
        return {**trainer.run(), "out": trainer.out}
