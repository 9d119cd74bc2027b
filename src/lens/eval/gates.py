"""The cheap gate before any long nano run: does a model draw the colour and the shape it is asked for?

Prompts "a photo of a {colour} {shape}" for every chromatic colour and every shape, `seeds` images
each (8 x 8 x 2 = 128 by default), read by the Nano-Eval analyser: `colour` is the share of images
with a detection (above GenEval's 0.3 confidence) of the named colour, `shape` of the named shape,
`both` of one detection with both. Chance is about 1/8 for each. Issue 12's first gate asks
colour >= 0.9 and shape >= 0.6 within ~20 CPU-minutes of one-object training.

With `rewrite` (the nano reasoner, `lens.world.reasoner.rewrite_prompt`), the generator gets each
prompt's dense rewrite (it names a size and a place), as Nano-Eval's reasoner setting does; the
analyser still checks the short prompt's colour and shape.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from lens.eval.detect import detect
from lens.eval.nano_eval import to_images
from lens.eval.rules import THRESHOLD
from lens.world.vocab import CHROMATIC, SHAPES, article

# (prompts, seed) -> images, as `lens.eval.nano_eval.evaluate` takes
Generate = Callable[[list[str], int], object]


def gate_prompts() -> list[tuple[str, str, str]]:
    """(prompt, colour, shape) for every chromatic colour x shape."""
    return [(f"a photo of {article(c)} {c} {s}", c, s) for c, s in itertools.product(CHROMATIC, SHAPES)]


def colour_shape_gate(
    generate: Generate, seeds: int = 2, batch_size: int = 32, rewrite: Callable[[str, int], str] | None = None
) -> dict[str, float]:
    """{"colour", "shape", "both": shares of images, "n": images} (see the module docstring).
    `rewrite(prompt, seed)` -> the text the generator gets instead of the prompt."""
    items = gate_prompts()
    hits = np.zeros((3,))
    n = 0
    for seed in range(seeds):
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            texts = [rewrite(p, seed) if rewrite else p for p, _, _ in chunk]
            images = to_images(generate(texts, 7919 * seed + start))
            for image, (_, colour, shape) in zip(images, chunk):
                found = [d for d in detect(image) if d.confidence > THRESHOLD]
                hits += (
                    any(d.color == colour for d in found),
                    any(d.cls == shape for d in found),
                    any(d.color == colour and d.cls == shape for d in found),
                )
                n += 1
    colour, shape, both = (float(v / n) for v in hits)
    return {"colour": colour, "shape": shape, "both": both, "n": n}
