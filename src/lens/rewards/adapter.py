"""Any callable as a reward, checked at the boundary; and the one place a reward spec is resolved.

`CallableReward(fn)` calls `fn(images, prompts, metadata)` and checks what comes back: one finite
number per image, each in [0, 1] (a list, tuple, numpy array or tensor). A reward that breaks the
contract fails with a LensError naming the reward, the image and the value, before a training step
is built on it.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence

from lens.errors import LensError

KINDS = ("nano-eval", "judge")


class CallableReward:
    def __init__(self, fn: Callable, name: str | None = None):
        if not callable(fn):
            raise LensError(
                f"reward {name or fn!r} is not callable; give a function(images, prompts, metadata)"
            )
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", type(fn).__name__)

    def __call__(self, images: list, prompts: list[str], metadata: list[dict | None]) -> list[float]:
        check_batch(images, prompts, metadata)
        scores = self.fn(images, prompts, metadata)
        return check_scores(scores, len(images), self.name)

    def __repr__(self) -> str:
        return f"CallableReward({self.name})"


def check_batch(images: Sequence, prompts: Sequence[str], metadata: Sequence) -> None:
    """One prompt and one metadata entry (a dict or None) per image."""
    if not len(images) == len(prompts) == len(metadata):
        raise LensError(
            f"a reward needs one prompt and one metadata entry per image; got {len(images)} images, "
            f"{len(prompts)} prompts and {len(metadata)} metadata entries"
        )


def check_scores(scores, n: int, name: str) -> list[float]:
    """`scores` as n floats in [0, 1], or a LensError that says what is wrong."""
    if hasattr(scores, "detach"):  # a torch tensor, without importing torch here
        scores = scores.detach().cpu().tolist()
    elif hasattr(scores, "tolist"):  # numpy
        scores = scores.tolist()
    if not isinstance(scores, (list, tuple)):
        raise LensError(f"reward {name} returned {type(scores).__name__}; return a list of {n} floats")
    if len(scores) != n:
        raise LensError(f"reward {name} returned {len(scores)} scores for {n} images; return one per image")
    out = []
    for i, s in enumerate(scores):
        try:
            value = float(s)
        except (TypeError, ValueError):
            raise LensError(f"reward {name} returned {s!r} for image {i}; scores must be numbers") from None
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise LensError(
                f"reward {name} returned {value} for image {i}; scores must be finite and in [0, 1]"
            )
        out.append(value)
    return out


def resolve(spec: str, **kwargs):
    """'nano-eval', 'judge' or 'module:function' -> a reward (kwargs go to its constructor)."""
    if spec == "nano-eval":
        from lens.rewards.nano import NanoEvalReward

        return NanoEvalReward(**kwargs)
    if spec == "judge":
        from lens.rewards.judge import JudgeReward

        return JudgeReward.from_env(**kwargs)
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise LensError(f"unknown reward {spec!r}; use {' or '.join(KINDS)}, or module:function for your own")
    try:
        obj = importlib.import_module(module)
    except ImportError as err:
        raise LensError(f"reward {spec!r}: cannot import {module!r} ({err}); is it on PYTHONPATH?") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LensError(f"reward {spec!r}: {module!r} has no {attr!r}")
        obj = getattr(obj, part)
    if kwargs:
        raise LensError(
            f"reward {spec!r} takes no settings ({', '.join(kwargs)}); bind them in your function"
        )
    return CallableReward(obj, name=spec)
