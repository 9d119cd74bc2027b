"""Scene sampling, deterministic by seed: free random scenes, scenes that satisfy GenEval metadata, and
the training mixture of both (so training data covers every GenEval category).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lens.errors import LensError
from lens.world.background import sample_background
from lens.world.geneval import TAGS, random_metadata
from lens.world.layout import place
from lens.world.relations import scene_relations
from lens.world.scene import Scene, SceneObject
from lens.world.vocab import (
    COLORS,
    DARK_ONLY,
    LIGHT_ONLY,
    MAX_OBJECTS,
    SHAPES,
    SIZES,
    check_color,
    check_shape,
)

COUNT_WEIGHTS = (0.2, 0.3, 0.3, 0.2)  # 1..4 objects in a free scene
SIZE_ORDER = ("small", "medium", "large")
RGB_JITTER = 8
OBJECT_SCALES = (0.5, 2.0)  # the allowed range of `object_scale` (the shape analyser's prototypes span it)


def _tone(colors: Sequence[str | None]) -> str | None:
    """The background tone the named colours need (None: any)."""
    light, dark = bool(set(colors) & set(LIGHT_ONLY)), bool(set(colors) & set(DARK_ONLY))
    if light and dark:
        return "mid"
    if light or dark:
        return "light" if light else "dark"
    return None


def _free_colors(tone: str) -> list[str]:
    banned = {"light": DARK_ONLY, "dark": LIGHT_ONLY}.get(tone, ())
    return [c for c in COLORS if c not in banned]


def _rgb(color: str, rng: np.random.Generator) -> tuple[int, int, int]:
    jitter = rng.integers(-RGB_JITTER, RGB_JITTER + 1, size=3)
    return tuple(int(v) for v in np.clip(np.asarray(COLORS[color]) + jitter, 0, 255))


def check_object_scale(object_scale: float) -> float:
    if not OBJECT_SCALES[0] <= object_scale <= OBJECT_SCALES[1]:
        raise LensError(
            f"object scale must be in {OBJECT_SCALES[0]}..{OBJECT_SCALES[1]} (1 = the world's sizes), got {object_scale}"
        )
    return float(object_scale)


def build_scene(
    specs: Sequence[dict[str, Any]],
    seed: int,
    constraints: Sequence[tuple[int, str, int]] = (),
    object_scale: float = 1.0,
) -> Scene:
    """A scene with objects from `specs` (dicts with shape and optional color / size), placed at random.

    Missing colours and sizes are drawn; sizes shrink when the objects do not fit. `constraints` are
    (i, relation, j) GenEval relations that must hold between objects i and j at every aspect.
    `object_scale` multiplies every radius (the size words keep their order: a large object is still
    the largest); 1.8 makes a one-object scene's shape span 3-6 of the nano's 16-pixel tokens. A
    crowded scene that does not fit scaled up is laid out at a smaller scale (down to 1).
    """
    if not 1 <= len(specs) <= MAX_OBJECTS:
        raise LensError(f"a scene holds 1 to {MAX_OBJECTS} objects, got {len(specs)}")
    object_scale = check_object_scale(object_scale)
    rng = np.random.default_rng(seed)
    shapes = [check_shape(s["shape"]) for s in specs]
    wanted = [check_color(s["color"]) if s.get("color") else None for s in specs]
    background = sample_background(rng, _tone(wanted))
    palette = _free_colors(background.tone)
    same = palette[rng.integers(len(palette))] if rng.random() < 0.35 else None  # uniform groups look natural
    colors = [c or same or palette[rng.integers(len(palette))] for c in wanted]
    drawn = [s.get("size") or SIZE_ORDER[rng.integers(3)] for s in specs]
    # a crowded scale-up steps back toward the world's own sizes before giving up
    scales = np.geomspace(object_scale, 1.0, 4) if object_scale > 1 else [object_scale]
    for scale in scales:
        sizes = list(drawn)
        for _ in range(3 * len(specs) + 1):
            radii = [SIZES[s] * scale * rng.uniform(0.95, 1.05) for s in sizes]
            centres = place(radii, rng, constraints, shapes)
            if centres is not None:
                break
            big = max(range(len(sizes)), key=lambda i: SIZE_ORDER.index(sizes[i]))
            if sizes[big] == "small":
                break
            sizes[big] = SIZE_ORDER[SIZE_ORDER.index(sizes[big]) - 1]
        if centres is not None:
            break
    if centres is None:
        raise LensError("could not lay these objects out without overlap; ask for fewer or smaller objects")
    objects = [
        SceneObject(shape, color, size, x, y, float(r), _rgb(color, rng))
        for shape, color, size, (x, y), r in zip(shapes, colors, sizes, centres, radii)
    ]
    return Scene(objects, background, scene_relations(objects), seed=seed)


def random_scene(seed: int, n_objects: int | None = None, object_scale: float = 1.0) -> Scene:
    """A free scene: 1-4 objects of any shape, colour and size."""
    rng = np.random.default_rng([seed, 1])
    n = n_objects or int(rng.choice(np.arange(1, MAX_OBJECTS + 1), p=COUNT_WEIGHTS))
    specs = [{"shape": SHAPES[rng.integers(len(SHAPES))]} for _ in range(n)]
    return build_scene(specs, seed, object_scale=object_scale)


def scene_for_metadata(
    metadata: dict[str, Any], seed: int, distractors: int = 0, object_scale: float = 1.0
) -> Scene:
    """A scene that satisfies GenEval metadata: every include holds and no exclude is violated.

    `distractors` extra objects (of shapes the prompt does not name) are added when they fit.
    """
    try:
        include = metadata["include"]
        specs, groups = [], []
        for req in include:
            groups.append(len(specs))
            specs += [{"shape": req["class"], "color": req.get("color")} for _ in range(int(req["count"]))]
        constraints = [
            (groups[k], req["position"][0], groups[req["position"][1]])
            for k, req in enumerate(include)
            if "position" in req
        ]
        named = {r["class"] for r in include} | {r["class"] for r in metadata.get("exclude", [])}
    except (KeyError, TypeError, IndexError) as err:
        raise LensError(f"bad GenEval metadata ({err!r}); see lens.world.geneval for the format") from err
    rng = np.random.default_rng([seed, 2])
    others = [s for s in SHAPES if s not in named]
    n_extra = min(distractors, MAX_OBJECTS - len(specs), len(others))
    specs += (
        [{"shape": others[i]} for i in rng.choice(len(others), n_extra, replace=False)] if n_extra > 0 else []
    )
    return build_scene(specs, seed, constraints, object_scale)


def sample_scene(
    seed: int, geneval_fraction: float = 0.5, objects: int | None = None, object_scale: float = 1.0
) -> Scene:
    """The training mixture: with probability `geneval_fraction` a scene for a random GenEval-category
    prompt (with up to one distractor outside counting), else a free scene. `objects` = N gives free
    scenes of exactly N objects instead (a curriculum stage, e.g. one object per scene first)."""
    if objects is not None:
        if not 1 <= objects <= MAX_OBJECTS:
            raise LensError(f"objects must be 1..{MAX_OBJECTS}, got {objects}")
        return random_scene(seed, objects, object_scale)
    rng = np.random.default_rng([seed, 3])
    if rng.random() >= geneval_fraction:
        return random_scene(seed, object_scale=object_scale)
    tag = TAGS[rng.integers(len(TAGS))]
    md = random_metadata(tag, rng)
    distractors = 0 if tag == "counting" else int(rng.integers(2))
    return scene_for_metadata(md, seed, distractors, object_scale)
