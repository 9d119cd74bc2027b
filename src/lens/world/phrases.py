"""Phrasing shared by every caption style: where an object sits, count words and referring expressions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lens.world.scene import SceneObject
from lens.world.vocab import NUMBERS

ORDINALS = ("first", "second", "third", "fourth")


def pick(rng: np.random.Generator, options):
    return options[rng.integers(len(options))]


def region(obj: SceneObject) -> tuple[str, str]:
    """(row, column) of the 3x3 grid: ('top' | 'middle' | 'bottom', 'left' | 'centre' | 'right')."""
    row = "top" if obj.y < 0.37 else "bottom" if obj.y > 0.63 else "middle"
    col = "left" if obj.x < 0.37 else "right" if obj.x > 0.63 else "centre"
    return row, col


def count_word(n: int) -> str:
    return NUMBERS.get(n, str(n))


def refer(
    objects: list[SceneObject], size_word: Callable[[str], str], place: Callable[[tuple[str, str]], str]
) -> list[str]:
    """The shortest unambiguous way to refer to each object ('the star', 'the red star', ...).

    `size_word('medium')` and `place(('top', 'left'))` give the style's words ('medium-sized',
    'in the top left corner')."""
    keys = [
        ((p.shape,), (p.color, p.shape), (p.size, p.color, p.shape), (p.color, p.shape, *region(p)))
        for p in objects
    ]
    out = []
    for o in objects:
        options = (
            o.shape,
            f"{o.color} {o.shape}",
            f"{size_word(o.size)} {o.color} {o.shape}",
            f"{o.color} {o.shape} {place(region(o))}",
        )
        mine = keys[objects.index(o)]
        ref = next(
            (text for k, text in enumerate(options) if sum(ks[k] == mine[k] for ks in keys) == 1), None
        )
        if ref is None:  # identical twins in one region: count them from the left
            twins = sorted(
                (p for p in objects if (p.color, p.shape) == (o.color, o.shape)), key=lambda p: p.x
            )
            ref = f"{ORDINALS[twins.index(o)]} {o.color} {o.shape} from the left"
        out.append("the " + ref)
    return out
