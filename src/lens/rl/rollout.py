"""Rollouts: a step's prompts (read by `lens.train.posttrain.read_prompts`) and sizes, G images per
prompt from the old policy through the one Euler loop (`lens.train.previews.sample_latents` ->
`lens.sampling.euler.euler_sample`), and their rewards.

Everything random is drawn from generators seeded by (run seed, step, what, index): which prompts and
sizes a step uses, each chunk's starting noise. A resumed run draws exactly what it would have.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from lens.errors import LensError
from lens.rl.config import RLConfig
from lens.train.posttrain import Prompt, derived_seed
from lens.train.previews import sample_latents

Reward = Callable[[list, list[str], list], list[float]]  # lens.rewards.Reward's call signature


@dataclass
class Group:
    prompt: Prompt
    size: tuple[int, int]  # (height, width) in pixels


def plan_groups(prompts: list[Prompt], cfg: RLConfig, step: int) -> list[Group]:
    """The step's prompts (a fresh permutation of the list, repeated when the step wants more) and one
    size per prompt's group."""
    n = cfg.rollout.prompts_per_step
    gen = torch.Generator().manual_seed(derived_seed(cfg.run.seed, step, "groups"))
    order = torch.cat(
        [torch.randperm(len(prompts), generator=gen) for _ in range(math.ceil(n / len(prompts)))]
    )
    sizes = cfg.sizes()
    picks = torch.randint(len(sizes), (n,), generator=gen)
    return [Group(prompts[i], sizes[j]) for i, j in zip(order[:n].tolist(), picks.tolist())]


@dataclass
class Chunk:
    """Images sampled in one batch: same size, any groups."""

    latents: Tensor  # (B, 128, h, w): the rollouts' x0
    groups: list[int]  # each row's group
    members: list[int]  # each row's index within its group


@dataclass
class Rollouts:
    groups: list[Group]
    texts: list[Tensor]  # (S_g, L, D) features of each group's prompt
    places: list[Tensor] | None  # (S_g, 2) grounded places of them, for a grounded model; else None
    chunks: list[Chunk]
    rewards: Tensor  # (P, G) raw rewards, float64


def check_rewards(scores, n: int) -> list[float]:
    values = [float(s) for s in scores]
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise LensError(
            f"the reward returned {values[:8]} for {n} images; it must return one finite number per image"
        )
    return values


@torch.no_grad()
def rollout(
    sampler,
    encoders,
    groups: list[Group],
    cfg: RLConfig,
    step: int,
    reward: Reward,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    grounded: bool = False,
) -> Rollouts:
    """G images for every group with `sampler` (the old policy), decoded and scored in chunks of
    `rollout.batch` same-size images. The model sees each prompt's `conditioning` (grounded when it
    was trained so); the reward judges the request `text`."""
    from lens.eval.nano_eval import to_images

    rc = cfg.rollout
    captions = [g.prompt.conditioning for g in groups]
    texts = encoders.encode_text(captions)
    places = encoders.prompt_places(captions, grounded)
    rewards = torch.zeros(len(groups), rc.group_size, dtype=torch.float64)
    by_size: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for g, group in enumerate(groups):
        by_size.setdefault(group.size, []).extend((g, k) for k in range(rc.group_size))
    chunks = []
    for (height, width), items in by_size.items():
        for start in range(0, len(items), rc.batch):
            part = items[start : start + rc.batch]
            rows = [g for g, _ in part]
            seed = derived_seed(cfg.run.seed, step, "rollout", len(chunks))
            latents = sample_latents(
                sampler, [texts[g] for g in rows], (height // 16, width // 16), rc.steps, rc.guidance, seed,
                device, autocast_dtype, places=None if places is None else [places[g] for g in rows],
            )  # fmt: skip
            pixels = encoders.decode_latents(latents)  # (B, 3, H, W) in [0, 1]
            prompts = [groups[g].prompt for g in rows]
            scores = reward(to_images(pixels), [p.text for p in prompts], [p.metadata for p in prompts])
            for (g, k), score in zip(part, check_rewards(scores, len(part))):
                rewards[g, k] = score
            chunks.append(Chunk(latents, rows, [k for _, k in part]))
    return Rollouts(groups, texts, places, chunks, rewards)
