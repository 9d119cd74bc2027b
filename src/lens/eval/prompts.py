"""The Nano-Eval prompt suite: GenEval's six categories over this world, in GenEval's JSONL format.

Default suite (seed 0, 156 prompts): single_object every shape (8), two_object every pair of
shapes (28), counting every shape x 2/3/4 (24), and 32 each of colors, position and color_attr drawn
without repeats. Lines look like GenEval's evaluation_metadata.jsonl, e.g.
{"tag": "position", "include": [{"class": "triangle", "count": 1}, {"class": "star", "count": 1,
"position": ["left of", 0]}], "prompt": "a photo of a star left of a triangle"}
"""

from __future__ import annotations

import itertools
import json
import os

import numpy as np

from lens.errors import LensError
from lens.world.geneval import COUNTS, TAGS, make_metadata, random_metadata
from lens.world.vocab import COLORS, SHAPES

PER_TAG = 32


def nano_prompts(seed: int = 0, per_tag: int = PER_TAG, coloured_counting: int = 0) -> list[dict]:
    """The suite, ordered by tag as in GenEval; deterministic by seed.

    `coloured_counting` k > 0 adds, after the counting prompts, every shape x count again with k
    colours drawn at random ("a photo of three red circles"): counting prompts that the default suite
    does not hold (an RL prompt set that trains counting and keeps the suite held out). The other
    prompts do not change with it."""
    if per_tag < 1:
        raise LensError(f"per_tag must be at least 1, got {per_tag}")
    if not 0 <= coloured_counting <= len(COLORS):
        raise LensError(f"coloured_counting must be in 0..{len(COLORS)}, got {coloured_counting}")
    rng = np.random.default_rng([seed, 7])
    out = [make_metadata("single_object", [{"class": s, "count": 1}]) for s in SHAPES]
    pairs = list(itertools.combinations(SHAPES, 2))
    for k in rng.permutation(len(pairs)):
        a, b = pairs[k] if rng.random() < 0.5 else pairs[k][::-1]
        out.append(make_metadata("two_object", [{"class": a, "count": 1}, {"class": b, "count": 1}]))
    out += [make_metadata("counting", [{"class": s, "count": n}]) for s in SHAPES for n in COUNTS]
    if coloured_counting:
        colour_rng = np.random.default_rng([seed, 11])  # its own stream: the other tags' draws stay put
        for s, n in itertools.product(SHAPES, COUNTS):
            for c in colour_rng.choice(sorted(COLORS), coloured_counting, replace=False):
                out.append(make_metadata("counting", [{"class": s, "count": n, "color": str(c)}]))
    combos = [(s, c) for s in SHAPES for c in COLORS]
    for k in rng.choice(len(combos), min(per_tag, len(combos)), replace=False):
        s, c = combos[k]
        out.append(make_metadata("colors", [{"class": s, "count": 1, "color": c}]))
    for tag in ("position", "color_attr"):
        seen: set[str] = set()
        for _ in range(100 * per_tag):
            if len(seen) == per_tag:
                break
            md = random_metadata(tag, rng)
            if md["prompt"] not in seen:
                seen.add(md["prompt"])
                out.append(md)
    return out


def write_prompts(path: str, prompts: list[dict]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        for md in prompts:
            f.write(json.dumps(md) + "\n")


def read_prompts(path: str) -> list[dict]:
    """Prompts from a GenEval-format JSONL file, checked enough to score."""
    if not os.path.isfile(path):
        raise LensError(f"no prompt file at {path}; write one with `lens eval nano-prompts --out {path}`")
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                md = json.loads(line)
            except json.JSONDecodeError as err:
                raise LensError(
                    f"{path}:{n} is not JSON ({err.msg}); one GenEval metadata object per line"
                ) from err
            check_metadata(md, f"{path}:{n}")
            out.append(md)
    return out


def check_metadata(md: dict, where: str) -> dict:
    ok = (
        isinstance(md, dict)
        and md.get("tag") in TAGS
        and isinstance(md.get("include"), list)
        and md["include"]
    )
    ok = ok and all(
        isinstance(r, dict) and "class" in r and "count" in r for r in md["include"] + md.get("exclude", [])
    )
    if not ok:
        raise LensError(
            f"{where}: not GenEval metadata; each line needs tag (one of {', '.join(TAGS)}), prompt and a "
            "non-empty include list of {class, count[, color][, position]}"
        )
    return md
