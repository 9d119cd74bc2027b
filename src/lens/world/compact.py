"""The compact dense caption: everything a dense caption states, in at most ~40 words.

Every object's size, colour, shape and place, the counts (per shape), the relations and the
background, in short varied phrasing:

    "Two circles and a star on a plain light grey background: a small red circle at top left, a
    large red circle in the centre and a medium blue star on the right. The star is right of the
    small red circle."

Why it exists: the verbose style spends ~200 text tokens on a scene, so an object phrase is ~10 of
them and a small denoiser's attention spreads over the rest (issue 12: with such captions the same
model that binds colours on short captions stops binding). Compact captions keep the information
and put ~40-60 tokens in front of the denoiser, which is also 2-3x cheaper per training sample.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from lens.text.grounding import GroundedPrompt
from lens.world.phrases import count_word, pick, refer, region
from lens.world.scene import Background, Relation, Scene, SceneObject
from lens.world.vocab import INVERSE, article, plural

MAX_WORDS = 40  # relations beyond the prompt's own are dropped rather than exceed this

SIZES = {"small": ("small", "little"), "medium": ("medium", "mid-sized"), "large": ("large", "big")}
PLACES = {
    ("top", "left"): ("at top left", "in the top left", "in the upper left"),
    ("top", "centre"): ("at the top", "at top centre", "in the top middle"),
    ("top", "right"): ("at top right", "in the top right", "in the upper right"),
    ("middle", "left"): ("on the left", "at centre left", "in the middle left"),
    ("middle", "centre"): ("in the centre", "in the middle", "at the centre"),
    ("middle", "right"): ("on the right", "at centre right", "in the middle right"),
    ("bottom", "left"): ("at bottom left", "in the bottom left", "in the lower left"),
    ("bottom", "centre"): ("at the bottom", "at bottom centre", "in the bottom middle"),
    ("bottom", "right"): ("at bottom right", "in the bottom right", "in the lower right"),
}
RELATIONS = {
    "left of": ("left of", "to the left of"),
    "right of": ("right of", "to the right of"),
    "above": ("above", "over"),
    "below": ("below", "under"),
    "next to": ("next to", "beside"),
}
PATTERNS = {"stripes": "striped", "checker": "checkered"}
OPENERS = ("{summary} on {bg}: {items}.", "On {bg}, {summary}: {items}.", "{Bg} with {summary}: {items}.")
SINGLE = ("{items} on {bg}.", "{Bg} with {items}.", "{items}, on {bg}.")


# An object phrase is written between these, the object's index in between (`_mark`), so that its
# characters are known after formatting; `_unmark` takes them out and returns the spans.
_OPEN, _MID, _CLOSE = "\ue000", "\ue001", "\ue002"  # private-use: never in a caption, not whitespace


def _mark(text: str, index: int) -> str:
    return f"{_OPEN}{index}{_MID}{text}{_CLOSE}"


def _unmark(text: str, objects: Sequence[SceneObject]) -> GroundedPrompt:
    first, *marked = text.split(_OPEN)
    plain, spans, length = [first], [], len(first)
    for part in marked:  # "<index> _MID <phrase> _CLOSE <rest>"
        index, rest = part.split(_MID, 1)
        phrase, rest = rest.split(_CLOSE, 1)
        o = objects[int(index)]
        spans.append((length, length + len(phrase), o.x, o.y))
        plain += [phrase, rest]
        length += len(phrase) + len(rest)
    return GroundedPrompt("".join(plain), spans)


def _cap(text: str) -> str:
    at = text.index(_MID) + 1 if text.startswith(_OPEN) else 0  # a sentence may open with a phrase
    return text[:at] + text[at].upper() + text[at + 1 :]


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _background(bg: Background, rng: np.random.Generator) -> str:
    if bg.kind == "gradient":
        return pick(
            rng,
            (
                f"a {bg.direction} {bg.name} to {bg.name2} gradient",
                f"a {bg.direction} gradient from {bg.name} to {bg.name2}",
            ),
        )
    if bg.kind == "texture":
        return f"a {PATTERNS.get(bg.pattern or '', 'mottled')} {bg.name} background"
    return pick(rng, (f"a plain {bg.name} background", f"a flat {bg.name} background"))


def _summary(objects: list[SceneObject]) -> str:
    """Counts per shape ('two circles and a star'); 'four shapes' when more than two shapes appear."""
    shapes = Counter(o.shape for o in objects)
    if len(shapes) > 2:
        return f"{count_word(len(objects))} shapes"
    return _join([f"{article(s) if n == 1 else count_word(n)} {plural(s, n)}" for s, n in shapes.items()])


def _item(obj: SceneObject, index: int, rng: np.random.Generator) -> str:
    head = f"{pick(rng, SIZES[obj.size])} {obj.color} {obj.shape}"
    return _mark(f"{article(head)} {head} {pick(rng, PLACES[region(obj)])}", index)


def _relation(rel: Relation, refs: list[str], rng: np.random.Generator, flip: bool) -> str:
    i, j, name = rel.subject, rel.object, rel.relation
    if flip and name != "next to" and rng.random() < 0.5:
        i, j, name = j, i, INVERSE[name]  # state it from the other side
    return _cap(f"{_mark(refs[i], i)} is {pick(rng, RELATIONS[name])} {_mark(refs[j], j)}.")


def compact_caption(scene: Scene, seed: int | None = None, keep: Sequence[Relation] = ()) -> str:
    """The scene in <= ~40 words: counts, every object (size, colour, shape, place), relations,
    background. Deterministic for a scene (and `seed`, which picks other phrasings). Relations in
    `keep` are always stated, in their own direction (the reasoner keeps the prompt's relation)."""
    return str(grounded_compact_caption(scene, seed, keep))


def grounded_compact_caption(
    scene: Scene, seed: int | None = None, keep: Sequence[Relation] = ()
) -> GroundedPrompt:
    """`compact_caption` with its spans: each object's phrase, and each reference to it in a
    relation, at the object's centre."""
    rng = np.random.default_rng([scene.seed if seed is None else seed, 6])
    rows = ("top", "middle", "bottom")
    order = sorted(  # reading order
        range(len(scene.objects)),
        key=lambda k: (rows.index(region(scene.objects[k])[0]), scene.objects[k].x),
    )
    objs = [scene.objects[k] for k in order]
    bg = _background(scene.background, rng)
    items = _join([_item(scene.objects[k], k, rng) for k in order])
    if len(objs) == 1:
        text = pick(rng, SINGLE).format(items=items, bg=bg, Bg=_cap(bg))
    else:
        text = pick(rng, OPENERS).format(summary=_summary(objs), items=items, bg=bg, Bg=_cap(bg))
    text = _cap(text)
    refs = refer(scene.objects, lambda s: SIZES[s][0], lambda rc: PLACES[rc][0])
    sentences = [text] + [_relation(r, refs, rng, flip=False) for r in keep]
    kept = {(r.subject, r.object) for r in keep} | {(r.object, r.subject) for r in keep}
    others = [r for r in scene.relations if (r.subject, r.object) not in kept]
    if others and not keep:
        extra = _relation(others[rng.integers(len(others))], refs, rng, flip=True)
        if len(" ".join([*sentences, extra]).split()) <= MAX_WORDS:
            sentences.append(extra)
    return _unmark(" ".join(sentences), scene.objects)
