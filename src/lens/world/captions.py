"""Captions: a dense paragraph that names everything in the scene, and a brief alt-text line.

The dense caption mirrors the paper's GPT-4.1 captions at world scale: counts, every object's
colour, shape, size and place, the relations between them, the background and the style, in varied
sentence templates drawn by seed. The brief caption names one salient object, like web alt-text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from lens.errors import LensError
from lens.text.grounding import GroundedPrompt, whole_prompt
from lens.world.compact import compact_caption, grounded_compact_caption
from lens.world.phrases import count_word, pick, refer, region
from lens.world.scene import Background, Relation, Scene, SceneObject
from lens.world.vocab import INVERSE, article, plural

SIZE_WORDS = {
    "small": ("small", "little"),
    "medium": ("medium-sized", "mid-sized"),
    "large": ("large", "big"),
}
SHAPE_WORDS = {
    "circle": ("circle", "round circle"),
    "square": ("square",),
    "triangle": ("triangle", "upward-pointing triangle"),
    "star": ("star", "five-pointed star"),
    "ring": ("ring", "donut-shaped ring"),
    "diamond": ("diamond", "diamond shape"),
    "cross": ("cross", "plus-shaped cross"),
    "heart": ("heart", "heart shape"),
}
REL_WORDS = {
    "left of": ("to the left of", "left of", "on the left side of"),
    "right of": ("to the right of", "right of", "on the right side of"),
    "above": ("above", "higher up than", "over"),
    "below": ("below", "beneath", "lower down than"),
    "next to": ("next to", "beside", "close to"),
}
REGIONS = {
    ("top", "left"): ("the top left corner", "the upper left", "the upper-left area"),
    ("top", "centre"): ("the top centre", "the upper middle", "the top of the image"),
    ("top", "right"): ("the top right corner", "the upper right", "the upper-right area"),
    ("middle", "left"): ("the left side", "the middle of the left half", "the centre left"),
    ("middle", "centre"): ("the centre", "the middle of the image", "the very centre of the frame"),
    ("middle", "right"): ("the right side", "the middle of the right half", "the centre right"),
    ("bottom", "left"): ("the bottom left corner", "the lower left", "the lower-left area"),
    ("bottom", "centre"): ("the bottom centre", "the lower middle", "the bottom of the image"),
    ("bottom", "right"): ("the bottom right corner", "the lower right", "the lower-right area"),
}
OPENERS = (
    "The image shows {summary} on {bg}.",
    "This is a simple flat illustration of {summary} set against {bg}.",
    "A minimalist picture containing {summary}, arranged on {bg}.",
    "The picture depicts {summary} on top of {bg}.",
)
TOTALS = (
    "There {be} {total} in total{detail}.",
    "Altogether the scene holds {total}{detail}.",
    "In all, {total} can be counted{detail}.",
)
PLACEMENTS = (
    "In {region}, there is {np}.",
    "{NP} sits in {region}.",
    "{NP} appears in {region}.",
    "Toward {region} we see {np}.",
    "{Region} holds {np}.",
)
EXTENTS = (
    "It spans about {frac} of the image's shorter side.",
    "It measures roughly {frac} of the frame's shorter side across.",
)
STYLES = (
    "All shapes are flat and solid-coloured, with clean, crisp edges, no outlines and no shadows.",
    "The style is that of a clean vector graphic: uniform fills, sharp edges and no shading or text.",
    "Every shape is filled with a single flat colour and has smooth, sharp edges; there is no text anywhere.",
)
EMPTY = (
    "The rest of the frame is empty, leaving plenty of open space around the objects.",
    "Nothing else appears in the image, and the space between the shapes is clear.",
    "Apart from these objects the picture is empty.",
)
CAPTION_STYLES = ("compact", "verbose")
FRACTIONS = ((0.2, "a fifth"), (0.27, "a quarter"), (0.36, "a third"), (0.45, "two fifths"), (1.0, "half"))


def _summary(objects: list[SceneObject]) -> str:
    """'two red circles and a blue star' (groups by shape, then colour, in order of appearance)."""
    groups = Counter((o.shape, o.color) for o in objects)
    parts = []
    for (shape, color), n in groups.items():
        head = f"{color} {plural(shape, n)}"
        parts.append(f"{article(head) if n == 1 else count_word(n)} {head}")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _totals(objects: list[SceneObject]) -> tuple[str, str, str]:
    """('three objects', ': two circles and one star', 'are')."""
    shapes = Counter(o.shape for o in objects)
    parts = [f"{count_word(n)} {plural(s, n)}" for s, n in shapes.items()]
    n = len(objects)
    detail = ""
    if len(parts) > 1:
        detail = ": " + ", ".join(parts[:-1]) + " and " + parts[-1]
    elif n > 1:
        detail = f", all of them {plural(objects[0].shape, n)}"
    return f"{count_word(n)} {'object' if n == 1 else 'objects'}", detail, "is" if n == 1 else "are"


def _background(bg: Background, rng: np.random.Generator) -> tuple[str, str]:
    """(noun phrase for the opener, a full sentence about the background)."""
    if bg.kind == "gradient":
        ends = {
            "vertical": ("at the top", "at the bottom"),
            "horizontal": ("on the left", "on the right"),
            "diagonal": ("in the top left", "in the bottom right"),
        }[bg.direction or "diagonal"]
        short = f"a {bg.direction} {bg.name} to {bg.name2} gradient background"
        long = f"The background is a smooth {bg.direction} gradient running from {bg.name} {ends[0]} to {bg.name2} {ends[1]}."
    elif bg.kind == "texture":
        pattern = {"stripes": "faint diagonal stripes", "checker": "a faint checkerboard pattern"}.get(
            bg.pattern or "", "a soft, mottled cloudy texture"
        )
        short = f"a textured {bg.name} background"
        long = f"The backdrop is {bg.name} with {pattern}, subtle enough to stay in the background."
    else:
        short = f"a plain {bg.name} background"
        long = pick(
            rng,
            (
                f"The background is a plain, uniform {bg.name}.",
                f"Behind the shapes is a flat {bg.name} backdrop.",
            ),
        )
    return short, long


def _np(obj: SceneObject, rng: np.random.Generator) -> str:
    head = f"{pick(rng, SIZE_WORDS[obj.size])} {obj.color} {pick(rng, SHAPE_WORDS[obj.shape])}"
    return f"{article(head)} {head}"


def _relation(i: int, rel: str, j: int, refs: list[str], rng: np.random.Generator, flip: bool = True) -> str:
    if flip and rel != "next to" and rng.random() < 0.5:
        i, j, rel = j, i, INVERSE[rel]  # state it from the other side
    words = pick(rng, REL_WORDS[rel]) if flip else REL_WORDS[rel][0]
    text = f"{refs[i]} is {words} {refs[j]}."
    return text[0].upper() + text[1:]


def dense_caption(
    scene: Scene, seed: int | None = None, keep: Sequence[Relation] = (), style: str = "compact"
) -> str:
    """The dense caption of a scene in `style`: "compact" (<= ~40 words, `lens.world.compact`, what the
    nano trains on) or "verbose" (a ~130-word paragraph, the paper's caption length)."""
    if style == "compact":
        return compact_caption(scene, seed, keep)
    if style == "verbose":
        return verbose_caption(scene, seed, keep)
    raise LensError(f"unknown caption style {style!r}; use one of {', '.join(CAPTION_STYLES)}")


def grounded_caption(
    scene: Scene, seed: int | None = None, keep: Sequence[Relation] = (), style: str = "compact"
) -> GroundedPrompt:
    """`dense_caption` with its spans (`lens.text.grounding`): every object phrase of a compact
    caption at its object; a verbose caption has none."""
    if style == "compact":
        return grounded_compact_caption(scene, seed, keep)
    return GroundedPrompt(dense_caption(scene, seed, keep, style))


def verbose_caption(scene: Scene, seed: int | None = None, keep: Sequence[Relation] = ()) -> str:
    """A paragraph naming every object's colour, shape, size and place, the counts, the relations and
    the background. Deterministic for a scene (and `seed`, which picks other phrasings). Relations in
    `keep` are always stated, in their own direction (the reasoner keeps the prompt's relation)."""
    rng = np.random.default_rng([scene.seed if seed is None else seed, 4])
    objs = scene.objects
    bg_short, bg_long = _background(scene.background, rng)
    sentences = [pick(rng, OPENERS).format(summary=_summary(objs), bg=bg_short)]
    total, detail, be = _totals(objs)
    sentences.append(pick(rng, TOTALS).format(total=total, detail=detail, be=be))
    for obj in sorted(objs, key=lambda o: (round(o.y * 3), o.x)):  # reading order
        r, c = region(obj)
        where = pick(rng, REGIONS[(r, c)])
        np_ = _np(obj, rng)
        text = pick(rng, PLACEMENTS).format(
            region=where, Region=where[0].upper() + where[1:], np=np_, NP=np_[0].upper() + np_[1:]
        )
        sentences.append(text)
        if len(objs) <= 2:
            frac = next(name for limit, name in FRACTIONS if 2 * obj.radius <= limit)
            sentences.append(pick(rng, EXTENTS).format(frac=frac))
    refs = refer(objs, lambda s: SIZE_WORDS[s][0], lambda rc: "in " + REGIONS[rc][0])
    sentences += [_relation(r.subject, r.relation, r.object, refs, rng, flip=False) for r in keep]
    kept = {(r.subject, r.object) for r in keep} | {(r.object, r.subject) for r in keep}
    rels = [r for r in scene.relations if (r.subject, r.object) not in kept]
    order = rng.permutation(len(rels))[: max(4 - len(keep), 0)] if rels else []
    sentences += [
        _relation(rels[k].subject, rels[k].relation, rels[k].object, refs, rng) for k in sorted(order)
    ]
    sentences += [bg_long, pick(rng, STYLES), pick(rng, EMPTY)]
    return " ".join(sentences)


def salient(scene: Scene) -> SceneObject:
    """The largest object (the first one on ties)."""
    return max(scene.objects, key=lambda o: o.radius)


def grounded_brief_caption(scene: Scene, seed: int | None = None) -> GroundedPrompt:
    """`brief_caption`, all of it at its object's centre (it names one object and nothing else)."""
    text, o = brief_caption(scene, seed), salient(scene)
    return GroundedPrompt(text, whole_prompt(text, (o.x, o.y)))


def brief_caption(scene: Scene, seed: int | None = None) -> str:
    """Web alt-text naming one salient object: 'a photo of a red circle'."""
    rng = np.random.default_rng([scene.seed if seed is None else seed, 5])
    o = salient(scene)
    head = f"{o.color} {o.shape}"
    options = (
        f"a photo of {article(head)} {head}",
        f"{article(head)} {head}",
        f"an image of {article(head)} {head}",
        f"{head} on a {scene.background.name} background",
        f"a picture of {article(head)} {head}",
    )
    return pick(rng, options)
