"""The `lens rl` loop (DiffusionNFT, REFERENCE 10): build the policy from an `RLConfig`, then per step
roll out, score, update, log, sample and checkpoint.

One step: P prompts x G images from the old policy (Euler ODE), rewards -> r in [0, 1] within each
group (`nft.optimality`), then one AdamW step on the NFT loss over all P x G noised rollouts (gradients
accumulated over chunks of `rollout.batch` images), then the old policy's scheduled update. The run
directory is a training run's (`lens.train`): DCP checkpoints with exact resume, metrics.jsonl,
TensorBoard, sample grids, train.log, and a training view of the config (config.json) that
`lens export` reads; rl.json is the RL config itself. The run itself (resume, the loop, SIGTERM) is
`lens.train.postrun.PostTrainer`'s. One process (no FSDP yet).
"""

from __future__ import annotations

from pathlib import Path

import torch

from lens.errors import LensError
from lens.model.flops import forward_flops, train_step_flops
from lens.rl.config import RLConfig, training_view
from lens.rl.nft import nft_loss, optimality
from lens.rl.policy import OldPolicy, adapter_off, build_policy, evaluating
from lens.rl.rollout import Reward, Rollouts, plan_groups, rollout
from lens.sampling.euler import denoiser_velocity
from lens.sampling.schedule import noised
from lens.train.batches import assemble
from lens.train.encoders import FrozenEncoders
from lens.train.faults import disk_errors
from lens.train.logs import log
from lens.train.metrics import Metrics, timer
from lens.train.objective import step_generator
from lens.train.postrun import PostTrainer
from lens.train.posttrain import (
    base_object_scale,
    pipeline_folder,
    read_prompts,
    rewrite_prompts,
    sample_captions,
)
from lens.train.previews import sample_latents, write_preview


def run_dir_of(cfg: RLConfig) -> Path:
    return Path(cfg.run_dir or f"runs/rl-{cfg.preset or 'run'}")


def resolve(cfg: RLConfig, reward: Reward | None) -> Reward:
    """The given callable, else `cfg.reward` through `lens.rewards.resolve_reward`."""
    if reward is not None:
        return reward
    if not cfg.reward:
        raise LensError("no reward: pass --reward nano-eval, judge or module:function (or set reward=...)")
    from lens.rewards import resolve_reward

    return resolve_reward(cfg.reward)


class RLTrainer(PostTrainer):
    command = "lens rl"

    def __init__(self, cfg: RLConfig, reward: Reward | None = None, resume: bool = False):
        self.cfg = cfg
        self.check_start(run_dir_of(cfg), resume)
        self.reward = resolve(cfg, reward)
        scale = base_object_scale(cfg.policy.base)
        self.prompts = rewrite_prompts(
            read_prompts(cfg.rollout.prompts), cfg.rollout.rewrite, "rollout.prompts", scale
        )
        self.sample_captions = sample_captions(cfg.log.sample_prompts, cfg.rollout.rewrite, scale)
        device = self.open_run(cfg.run)

        # the base (reference policy), its frozen encoders, and the trained adapter
        from lens.model.transformer import LensTransformer2DModel

        base = pipeline_folder(
            cfg.policy.base, self.run_dir / "base", "policy.base", cfg.sizes()[0], cfg.run.seed
        )
        self.view = training_view(
            cfg, base, dict(LensTransformer2DModel.load_config(str(base / "transformer")))
        )
        self.encoders = FrozenEncoders(self.view, device)
        self.grounded = self.view.model.text_grounding  # the base was trained grounded
        torch.manual_seed(cfg.run.seed)  # the adapter's initialisation
        self.model = build_policy(self.view, cfg.run.activation_checkpointing, device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        o = cfg.optim
        self.optim = torch.optim.AdamW(
            self.params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay
        )
        self.old = OldPolicy(self.model, cfg.nft.old_decay, cfg.nft.old_every)
        self.trained, self.ema = self.model, self.old  # the checkpoint's model and EMA slot
        self.resume_state(resume)
        cfg.save(self.run_dir / "rl.json")
        self.view.save(self.run_dir / "config.json")
        self.metrics = Metrics(self.run_dir, cfg.log, self.info, cfg.run.steps, self.step)
        log.info(
            "rl %s | base %s | %d prompts | %d x %d images per step at %s | %.2fM adapter parameters on %s",
            self.run_dir, base, len(self.prompts), cfg.rollout.prompts_per_step, cfg.rollout.group_size,
            ", ".join(cfg.rollout.sizes), sum(p.numel() for p in self.params) / 1e6, device,
        )  # fmt: skip

    # ------------------------------------------------------------------ helpers
    def preview(self) -> None:
        """The current policy on the fixed prompts: RUN_DIR/samples/step_XXXXXXXX.png and TensorBoard."""
        lg, rc = self.cfg.log, self.cfg.rollout
        if not lg.sample_prompts:
            return
        h, w = self.cfg.sizes()[0]
        texts = self.encoders.encode_text(self.sample_captions)
        places = self.encoders.prompt_places(self.sample_captions, self.grounded)
        with evaluating(self.model):
            latents = sample_latents(
                self.model, texts, (h // 16, w // 16), rc.steps, rc.guidance, lg.sample_seed,
                self.info.device, self.autocast_dtype, places=places,
            )  # fmt: skip
        images = self.encoders.decode_latents(latents)
        log.info("wrote %s", write_preview(self.run_dir, self.step, images, self.metrics))

    def counts(self, ro: Rollouts) -> list[float]:
        """[images, image tokens, text tokens, padding tokens, FLOPs] of a step, for the throughput log:
        the rollouts' Euler steps (two forwards each with CFG), then per image the old and reference
        forwards and theta's forward and backward."""
        rc, config = self.cfg.rollout, self.model.config
        images = image_tokens = text_tokens = flops = 0.0
        for group, text in zip(ro.groups, ro.texts):
            n, s = (group.size[0] // 16) * (group.size[1] // 16), text.shape[0]
            per_step = forward_flops(config, n, s) + (forward_flops(config, n, 0) if rc.guidance > 1 else 0.0)
            per_image = rc.steps * per_step + 2 * forward_flops(config, n, s) + train_step_flops(config, n, s)
            images += rc.group_size
            image_tokens += rc.group_size * n
            text_tokens += rc.group_size * s
            flops += rc.group_size * per_image
        return [images, image_tokens, text_tokens, 0.0, flops]

    # ------------------------------------------------------------------ one step
    def update(self, ro: Rollouts) -> tuple[float, float, float]:
        """One AdamW step on the NFT loss over every rollout; returns (loss, KL, grad norm), sample means."""
        cfg, nft = self.cfg, self.cfg.nft
        r = optimality(ro.rewards, nft.std_eps)  # (P, G)
        total = ro.rewards.numel()
        loss_sum = kl_sum = 0.0
        for i, chunk in enumerate(ro.chunks):
            places = None if ro.places is None else [ro.places[g] for g in chunk.groups]
            inputs = assemble(list(chunk.latents), [ro.texts[g] for g in chunk.groups], False, places)
            x0 = inputs.x0.float()  # (B, N, C)
            gen = step_generator(cfg.run.seed, self.step, i, 0)
            t = torch.rand(x0.shape[0], generator=gen)  # (B,) uniform noise levels
            noise = torch.randn(x0.shape, generator=gen).to(x0.device)
            x_t = noised(x0, noise, t)

            def velocity(model, x_t=x_t, inputs=inputs, t=t):
                return denoiser_velocity(
                    model,
                    x_t,
                    inputs.text,
                    inputs.text_mask,
                    t * 1000.0,
                    inputs.grid,
                    autocast=self.autocast(),
                    places=inputs.places,
                )

            with evaluating(self.model):
                v_old = velocity(self.old.forward(self.model))
                with adapter_off(self.model):
                    v_ref = velocity(self.model)
            out = nft_loss(
                velocity(self.model), v_old, v_ref, noise - x0, r[chunk.groups, chunk.members], nft.beta,
                nft.kl_weight,
            )  # fmt: skip
            (out.loss.sum() / total).backward()
            loss_sum += float(out.loss.detach().sum())
            kl_sum += float(out.kl.sum())
        norm = self.clip_and_step(self.params, loss_sum / total, "the NFT loss")
        self.old.after_step(self.step)
        return loss_sum / total, kl_sum / total, norm

    def one_step(self) -> dict:
        t0 = timer()
        groups = plan_groups(self.prompts, self.cfg, self.step)
        with evaluating(self.model):
            ro = rollout(
                self.old.forward(self.model), self.encoders, groups, self.cfg, self.step, self.reward,
                self.info.device, self.autocast_dtype, self.grounded,
            )  # fmt: skip
        loss, kl, norm = self.update(ro)
        self.step += 1
        values = {
            "reward_mean": float(ro.rewards.mean()),
            "reward_std": float(ro.rewards.std(unbiased=False)),
            # the spread inside a group, where NFT's signal comes from (0: every image of a prompt ties)
            "reward_group_std": float(ro.rewards.std(dim=1, unbiased=False).mean()),
            "kl": kl,
        }
        lr = self.cfg.optim.lr
        self.metrics.record(self.step, loss, norm, lr, False, self.counts(ro), timer() - t0, values)
        return {"loss": loss, "grad_norm": norm, "lr": lr, **values}


def rl(cfg: RLConfig, reward: Reward | None = None, resume: bool = False) -> dict:
    """Run DiffusionNFT; returns {"step", "history": one dict per step run (loss, grad_norm, lr,
    reward_mean, reward_std, reward_group_std, kl), "stopped": "SIGTERM" when a stop request ended it early}."""
    with disk_errors(run_dir_of(cfg)):
        return RLTrainer(cfg, reward, resume).run()
