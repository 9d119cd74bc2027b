"""The training loop: build everything from a `Config`, then step, log, evaluate, sample and checkpoint.

One optimiser step = `optim.grad_accum` micro-batches (each one bucket batch or one pack per rank),
flow-matching loss, backward, gradient clipping, AdamW, optional EMA. A step whose loss or gradient
norm is not finite (on any rank: the checks use globally reduced values) is skipped and counted;
`train.max_nonfinite` skipped steps in a row stop the run with a message. SIGTERM and
`train.max_minutes` stop it after the current step, with a checkpoint (faults.py).
"""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import torch

from lens.errors import LensError
from lens.model.flops import train_step_flops
from lens.resolution import parse_size
from lens.source.spec import open_source
from lens.train import previews
from lens.train.batches import encode_microbatch
from lens.train.buckets import default_pack_tokens, parse_buckets
from lens.train.checkpoint import Checkpointer, latest_checkpoint, rng_state, set_rng_state
from lens.train.config import Config
from lens.train.denoiser import build_model, fold_whitening
from lens.train.distributed import all_reduce_sum, barrier, init_distributed, shutdown
from lens.train.ema import EMA
from lens.train.encoders import FrozenEncoders
from lens.train.evals import build_hooks, fixed_samples
from lens.train.faults import StopSignal, disk_errors
from lens.train.loader import TrainLoader
from lens.train.logs import close_logging, log, setup_logging
from lens.train.metrics import Metrics, timer
from lens.train.objective import draw_noise, flow_matching_loss, step_generator
from lens.train.parallelize import parallelize


class Trainer:
    def __init__(self, cfg: Config, resume: bool = False):
        self.cfg = cfg
        self.info = info = init_distributed(cfg.train, cfg.parallel)
        self.run_dir = run_dir_of(cfg)
        if latest_checkpoint(self.run_dir) is not None and not resume:
            raise LensError(
                f"{self.run_dir} already has checkpoints: pass --resume to continue it, or another --run-dir"
            )
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        barrier(info)
        setup_logging(self.run_dir, info.is_main)
        self._threads = torch.get_num_threads()
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)

        # 1. data
        self.source = open_source(cfg.data.shards, cfg.data, self.run_dir / "data", cfg.train.seed)
        if info.is_main:
            self.source.materialise()
        barrier(info)
        self.buckets = parse_buckets(cfg.data.buckets, cfg.data.batch_size)
        self.kind = cfg.data.kind if cfg.data.kind != "auto" else self.source.kind()
        pack_tokens = cfg.data.pack_tokens or default_pack_tokens(self.buckets)
        self.loader = TrainLoader(
            self.source, self.buckets, cfg.data, seed=cfg.train.seed, rank=info.rank, world=info.world,
            pack_tokens=pack_tokens, kind=self.kind,
        )  # fmt: skip

        # 2. frozen encoders (the LM only when captions arrive as text, or to encode fixed prompts)
        text_training = cfg.encoders.text_training
        self.encoders = FrozenEncoders(
            cfg, info.device, vae=True, text=self.kind == "images" or text_training != "frozen"
        )

        # 3. denoiser, AC / compile / FSDP, optimiser, EMA
        self.model = build_model(cfg.model, cfg.train.seed)
        if cfg.model.txt_in_init == "whiten" and not (resume and latest_checkpoint(self.run_dir)):
            self.whiten_text_input()
        if cfg.model.lora_rank > 0:  # before AC/FSDP wrap the blocks; freezes every base weight
            from lens.lora import add_lora

            add_lora(self.model, **cfg.model.lora_kwargs())
            if not cfg.model.init_from:
                log.warning("LoRA on a random denoiser (model.init_from is empty): a test setup")
        self.model_config = self.model.config
        self.model = parallelize(self.model, cfg.train, cfg.parallel, info)
        # what the optimiser, clipping and checkpoints see: the denoiser, or it and the LM it trains
        self.trained = self.model
        if text_training != "frozen":
            if info.world > 1:
                raise LensError(
                    f"encoders.text_training={text_training} runs in one process only (the LM is not "
                    "sharded); launch without torchrun, or keep encoders.text_training=frozen"
                )
            lm = self.encoders.train_text(scratch=text_training == "scratch", seed=cfg.train.seed)
            self.trained = torch.nn.ModuleDict({"transformer": self.model, "text_encoder": lm})
        # frozen weights (a LoRA run's base) stay out of the optimiser, clipping and EMA
        self.params = [p for p in self.trained.parameters() if p.requires_grad]
        o = cfg.optim
        fused = info.device.type == "cuda" and info.mesh is None
        self.optim = torch.optim.AdamW(
            self.params,
            lr=o.lr,
            betas=tuple(o.betas),
            eps=o.eps,
            weight_decay=o.weight_decay,
            fused=fused or None,
        )
        self.ema = EMA(self.model, o.ema_decay) if o.ema_decay > 0 else None

        # 4. state: fresh or resumed
        self.step, self.skipped, self.nonfinite_run = 0, 0, 0
        self.stopped: str | None = None
        self.ckpt = Checkpointer(self.run_dir, info, cfg.checkpoint.keep)
        extra = self.ckpt.resume(self.trained, self.optim, self.ema) if resume else None
        if extra is not None:
            self.step, self.skipped = int(extra["step"]), int(extra.get("skipped", 0))
            ranks = extra["ranks"]
            self.loader.load_state_dict([r["loader"] for r in ranks])
            if len(ranks) == info.world:
                set_rng_state(ranks[info.rank]["rng"])
        elif resume:
            log.info("no checkpoint in %s: starting from step 0", self.run_dir)
        if info.is_main:  # only now: a resume refused for another model config leaves the run's own
            cfg.save(self.run_dir / "config.json")
        self.metrics = Metrics(self.run_dir, cfg.log, info, cfg.train.steps, self.step)
        self.hooks = build_hooks(self, cfg.log.evals) if cfg.log.eval_every > 0 else []
        self._prompt_features = None
        # a DTensor shard reports its global size
        n_params = sum(p.numel() for p in self.trained.parameters())
        n_trained = sum(p.numel() for p in self.params)
        log.info(
            "run %s | %s shards (%s) | %d buckets%s | %.1fM parameters%s | %d process(es) on %s",
            self.run_dir, len(self.source.parts), self.kind, len(self.buckets),
            " (packed)" if cfg.data.packing else "", n_params / 1e6,
            f" ({n_trained / 1e6:.2f}M in the LoRA adapter)" if cfg.model.lora_rank > 0 else "",
            info.world, info.device,
        )  # fmt: skip

    # ------------------------------------------------------------------ helpers
    def whiten_text_input(self) -> None:
        """Fold the text features' per-layer whitening into txt_in (model.txt_in_init=whiten)."""
        cfg = self.cfg
        samples = fixed_samples(self.source, self.buckets, cfg.data, cfg.train.seed, cfg.model.whiten_samples)
        feats = [s.text for s in samples if s.text is not None]
        captions = [s.caption for s in samples if s.text is None and s.caption]
        if captions:
            with torch.no_grad():
                feats += self.encoders.encode_text(captions)
        used = fold_whitening(self.model, [f.cpu() for f in feats])
        log.info("txt_in: folded text-feature whitening from %d caption tokens", used["tokens"])

    def autocast(self):
        enabled = self.cfg.train.precision == "bf16"
        return torch.autocast(self.info.device.type, dtype=torch.bfloat16, enabled=enabled)

    def lr_at(self, step: int) -> float:
        o = self.cfg.optim
        return o.lr * min(1.0, (step + 1) / o.warmup_steps) if o.warmup_steps > 0 else o.lr

    def prompt_features(self, prompts) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """(S_i, L, D) features of each prompt, and (S_i, 2) places when the model trains grounded
        (`lens.text.grounding.prompt_spans`: a `GroundedPrompt`'s spans, else the whole prompt at the
        centre); None otherwise."""
        self.encoders.load_text()
        prompts = list(prompts)
        with torch.no_grad():
            feats = self.encoders.encode_text(prompts)
        places = self.encoders.prompt_places(prompts, self.cfg.model.text_grounding)
        if (
            self.kind == "features"
            and "nano-eval" not in self.cfg.log.evals
            and not self.encoders.text_trained
        ):
            self.encoders.drop_text()  # only the fixed prompts needed it
        return feats, places

    def generate_images(
        self,
        prompts: list[str],
        seed: int = 0,
        size: str | None = None,
        texts: tuple[list[torch.Tensor], list[torch.Tensor] | None] | None = None,
    ):
        """Sample with the training model (all ranks) through the pipeline's Euler loop; returns
        (P, 3, H, W) in [0, 1]. `texts`: the prompts' `prompt_features`, if already encoded."""
        lg = self.cfg.log
        h, w = parse_size(size, "size") if size else parse_size(lg.sample_size, "log.sample_size")
        feats, places = self.prompt_features(prompts) if texts is None else texts
        dtype = torch.bfloat16 if self.cfg.train.precision == "bf16" else None
        latents = previews.sample_latents(
            self.model, feats, (h // 16, w // 16), lg.sample_steps, lg.sample_guidance, seed,
            self.info.device, dtype, places=places,
        )  # fmt: skip
        return self.encoders.decode_latents(latents)

    def preview(self) -> None:
        """The fixed prompts' grid at this step: RUN_DIR/samples/step_XXXXXXXX.png and the metrics."""
        lg = self.cfg.log
        if not lg.sample_prompts:
            return
        if self._prompt_features is None or self.encoders.text_trained:  # a trained LM: encode anew
            self._prompt_features = self.prompt_features(lg.sample_prompts)
        images = self.generate_images(lg.sample_prompts, lg.sample_seed, texts=self._prompt_features)
        if self.info.is_main:
            log.info("wrote %s", previews.write_preview(self.run_dir, self.step, images, self.metrics))

    def evaluate(self) -> dict:
        values = {}
        for hook in self.hooks:
            values.update(hook(self))
        if values:
            self.metrics.scalars(self.step, values)
            log.info("eval step %d | %s", self.step, " | ".join(f"{k} {v:.4f}" for k, v in values.items()))
        return values

    # ------------------------------------------------------------------ one step
    def train_step(self) -> tuple[float, float, bool, list[float]]:
        cfg, info = self.cfg, self.info
        lr = self.lr_at(self.step)
        for group in self.optim.param_groups:
            group["lr"] = lr
        accum = cfg.optim.grad_accum
        counts = [0.0] * 5  # images, image tokens, text tokens, padding tokens, flops
        loss_sum = 0.0
        for micro in range(accum):
            inputs = encode_microbatch(
                next(self.loader), self.encoders, info.device, cfg.model.text_grounding
            )
            sigmas, noise = draw_noise(
                cfg.objective, inputs, step_generator(cfg.train.seed, self.step, micro, info.rank)
            )
            with self.autocast():
                loss = flow_matching_loss(self.model, inputs, sigmas, noise)
            if self.step + 1 in cfg.fault.nonfinite_at:
                loss = loss * float("nan")
            (loss / accum).backward()
            loss_sum += float(loss.detach())
            counts[0] += inputs.n_samples
            counts[1] += sum(inputs.image_tokens)
            counts[2] += sum(inputs.text_lengths)
            counts[3] += inputs.padding_tokens
            counts[4] += sum(
                train_step_flops(self.model_config, n, s)
                for n, s in zip(inputs.image_tokens, inputs.text_lengths)
            )
        clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.params, clip, foreach=True)
        norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        loss_mean = all_reduce_sum([loss_sum / accum], info)[0] / info.world
        ok = math.isfinite(loss_mean) and math.isfinite(norm)
        if ok:
            self.optim.step()
            if self.ema is not None:
                self.ema.update(self.step)
            self.nonfinite_run = 0
        else:
            self.skipped += 1
            self.nonfinite_run += 1
            log.warning(
                "step %d: non-finite loss (%s) or grad norm (%s); skipped", self.step + 1, loss_mean, norm
            )
        self.optim.zero_grad(set_to_none=True)
        return loss_mean, norm, not ok, counts

    # ------------------------------------------------------------------ the run
    def run(self) -> dict:
        with StopSignal() as stop:
            return self._run(stop)

    def _run(self, stop: StopSignal) -> dict:
        cfg = self.cfg
        losses: list[float] = []
        evals: dict[int, dict] = {}
        try:
            if self.hooks:  # at step 0, or right after a resume (it must match the value logged before)
                evals[self.step] = self.evaluate()
            started = timer()
            last = False
            while not last and self.step < cfg.train.steps:
                t0 = timer()
                loss, norm, skipped, counts = self.train_step()
                self.step += 1
                losses.append(loss)
                self.metrics.record(
                    self.step, loss, norm, self.lr_at(self.step - 1), skipped, counts, timer() - t0
                )
                if self.nonfinite_run >= cfg.train.max_nonfinite:
                    raise LensError(
                        f"{self.nonfinite_run} steps in a row had a non-finite loss or gradient (last: step {self.step}); "
                        "lower optim.lr, raise warm-up, check the data, or resume from an earlier checkpoint"
                    )
                last = self.step == cfg.train.steps or self.should_stop(started, stop.requested)
                if self.step % cfg.log.every == 0 or last:
                    self.metrics.report(
                        self.step, loss, norm, self.lr_at(self.step - 1), self.skipped, self.loader.stats
                    )
                if self.stopped:  # preempted: save first; evals may outlast the grace period
                    self.save()
                    break
                if cfg.log.eval_every and (self.step % cfg.log.eval_every == 0 or last):
                    evals[self.step] = self.evaluate()
                if cfg.log.sample_every and (self.step % cfg.log.sample_every == 0 or last):
                    self.preview()
                if self.step % cfg.checkpoint.interval == 0 or last:
                    self.save()
                if self.step == cfg.fault.kill_at_step:
                    os.kill(os.getpid(), signal.SIGKILL)
        finally:
            self.close()
        return {
            "step": self.step,
            "losses": losses,
            "skipped": self.skipped,
            "evals": evals,
            "data": self.loader.stats,
            "stopped": self.stopped,
        }

    def should_stop(self, started: float, signalled: bool) -> bool:
        """Past `train.max_minutes` or sent SIGTERM, on any rank (all ranks must stop at the same step)."""
        limit = self.cfg.train.max_minutes
        if limit <= 0 and self.info.world == 1 and not signalled:
            return False
        over = float(limit > 0 and timer() - started > 60.0 * limit)
        over, term = all_reduce_sum([over, float(signalled)], self.info)
        if term > 0:
            log.info("SIGTERM at step %d: saving and stopping; continue with --resume", self.step)
            self.stopped = "SIGTERM"
        elif over > 0:
            log.info("train.max_minutes=%g reached at step %d: saving and stopping", limit, self.step)
        return over + term > 0

    def save(self) -> Path:
        local = {"loader": self.loader.state_dict(), "rng": rng_state()}
        state = {"skipped": self.skipped, "lr": self.lr_at(self.step - 1)}
        kill = self.step == self.cfg.fault.kill_during_save
        return self.ckpt.save(self.step, self.trained, self.optim, self.ema, local, state, kill_midway=kill)

    def close(self) -> None:
        self.loader.close()
        self.metrics.close()
        shutdown(self.info)
        torch.set_num_threads(self._threads)  # leave an embedding process (tests, notebooks) as it was
        close_logging()


def run_dir_of(cfg: Config) -> Path:
    return Path(cfg.run_dir or f"runs/{cfg.preset or 'run'}")


def train(cfg: Config, resume: bool = False) -> dict:
    """Build a Trainer and run it; returns a summary (final step, per-step losses, evals, data stats,
    and `stopped`: "SIGTERM" when a stop request ended the run early)."""
    with disk_errors(run_dir_of(cfg)):
        return Trainer(cfg, resume=resume).run()
