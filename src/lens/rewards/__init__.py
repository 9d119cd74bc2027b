"""Rewards for post-training behind one interface: `reward(images, prompts, metadata) -> scores`.

A reward scores a batch: one float in [0, 1] per image, given the prompt it was generated from and
that prompt's metadata (GenEval-format for Nano-Eval, None where a reward needs none). Three kinds:

- "nano-eval": the exact Nano-Eval rubric for the nano world (lens.rewards.nano);
- "judge": a rubric judge through any OpenAI-compatible vision chat API (lens.rewards.judge);
- "module:function": any importable callable with the same signature (lens.rewards.adapter).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from PIL import Image


@runtime_checkable
class Reward(Protocol):
    def __call__(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict | None]
    ) -> list[float]: ...


def resolve_reward(spec: str, **kwargs) -> Reward:
    """The reward named by `spec`; kwargs configure it (see each kind's constructor)."""
    from lens.rewards.adapter import resolve

    return resolve(spec, **kwargs)


__all__ = ["Reward", "resolve_reward"]
