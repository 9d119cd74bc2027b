"""GenEval's six prompt categories in this world: metadata in GenEval's JSONL format, prompt phrasing,
parsing a prompt back into metadata, and random draws per category.

Metadata follows GenEval's evaluation_metadata.jsonl: `tag`, `include` (requirements that must all
hold: `class`, `count`, optional `color`, optional `position` = [relation, index of an earlier
include]), optional `exclude` (counting prompts exclude count + 1), and `prompt`. `find_prompt`
reads such a request out of free text (what the reasoner search's stand-in generator draws).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from lens.errors import LensError
from lens.world.vocab import (
    COLORS,
    GENEVAL_RELATIONS,
    NUMBERS,
    SHAPES,
    WORD_TO_NUMBER,
    article,
    plural,
    singular,
)

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
COUNTS = (2, 3, 4)
Metadata = dict[str, Any]


def _np(shape: str, count: int = 1, color: str | None = None) -> str:
    words = ([color] if color else []) + [plural(shape, count)]
    head = " ".join(words)
    return f"{article(head) if count == 1 else NUMBERS[count]} {head}"


def phrase(metadata: Metadata) -> str:
    """GenEval-style prompt text for metadata ("a photo of a blue star left of a green triangle")."""
    inc = metadata["include"]
    nps = [_np(r["class"], r["count"], r.get("color")) for r in inc]
    if len(inc) == 1:
        return f"a photo of {nps[0]}"
    if "position" in inc[1]:
        rel, _ = inc[1]["position"]
        return f"a photo of {nps[1]} {rel} {nps[0]}"
    return f"a photo of {nps[0]} and {nps[1]}"


def make_metadata(tag: str, objects: list[dict[str, Any]], relation: str | None = None) -> Metadata:
    """Metadata for `objects` (dicts with class, count, optional color) under `tag`.

    With a relation, objects[0] stands in `relation` to objects[1]; GenEval lists the target first.
    """
    if tag not in TAGS:
        raise LensError(f"unknown tag {tag!r}; use one of {', '.join(TAGS)}")
    include = [dict(o) for o in objects]
    if relation is not None:
        if relation not in GENEVAL_RELATIONS or len(include) != 2:
            raise LensError(f"a position prompt needs two objects and one of {GENEVAL_RELATIONS}")
        include = [include[1], {**include[0], "position": [relation, 0]}]
    md: Metadata = {"tag": tag, "include": include}
    if tag == "counting":
        md["exclude"] = [{"class": include[0]["class"], "count": include[0]["count"] + 1}]
    md["prompt"] = phrase(md)
    return md


def random_metadata(tag: str, rng: np.random.Generator) -> Metadata:
    """One random prompt of a category, drawn from this world's vocabulary."""
    s1, s2 = (SHAPES[i] for i in rng.choice(len(SHAPES), 2, replace=False))
    if tag == "single_object":
        return make_metadata(tag, [{"class": s1, "count": 1}])
    if tag == "two_object":
        return make_metadata(tag, [{"class": s1, "count": 1}, {"class": s2, "count": 1}])
    if tag == "counting":
        return make_metadata(tag, [{"class": s1, "count": int(rng.choice(COUNTS))}])
    if tag == "colors":
        color = list(COLORS)[rng.integers(len(COLORS))]
        return make_metadata(tag, [{"class": s1, "count": 1, "color": color}])
    if tag == "position":
        rel = GENEVAL_RELATIONS[rng.integers(len(GENEVAL_RELATIONS))]
        return make_metadata(tag, [{"class": s1, "count": 1}, {"class": s2, "count": 1}], rel)
    if tag == "color_attr":
        c1, c2 = (list(COLORS)[i] for i in rng.choice(len(COLORS), 2, replace=False))
        return make_metadata(
            tag, [{"class": s1, "count": 1, "color": c1}, {"class": s2, "count": 1, "color": c2}]
        )
    raise LensError(f"unknown tag {tag!r}; use one of {', '.join(TAGS)}")


_COUNT = r"(?P<n{i}>a|an|one|two|three|four|five|six)"
_COLOR = r"(?:(?P<c{i}>" + "|".join(COLORS) + r")\s+)?"
_SHAPE = r"(?P<s{i}>[a-z]+)"
_REL = r"(?P<rel>left of|right of|above|below|and)"


def _np_re(i: int) -> str:
    return (_COUNT + r"\s+" + _COLOR + _SHAPE).format(i=i)


_PROMPT = re.compile(
    r"^(?:an? (?:photo|picture|image) of\s+)?" + _np_re(1) + r"(?:\s+" + _REL + r"\s+" + _np_re(2) + r")?$"
)


def parse_prompt(prompt: str) -> Metadata:
    """GenEval-style prompt -> metadata (the inverse of `phrase`), or a LensError saying what is accepted."""
    text = " ".join(prompt.lower().strip().rstrip(".").split())
    m = _PROMPT.match(text)
    hint = (
        f"could not read {prompt!r}; write it like GenEval: 'a photo of two red circles', "
        f"'a photo of a star and a square', 'a photo of a blue star left of a green triangle' "
        f"(shapes: {', '.join(SHAPES)}; colours: {', '.join(COLORS)})"
    )
    if not m:
        raise LensError(hint)
    objects = []
    for i in (1, 2):
        if m.group(f"s{i}") is None:
            continue
        shape = singular(m.group(f"s{i}"))
        if shape is None:
            raise LensError(hint)
        word = m.group(f"n{i}")
        count = 1 if word in ("a", "an") else WORD_TO_NUMBER[word]
        obj: dict[str, Any] = {"class": shape, "count": count}
        if m.group(f"c{i}"):
            obj["color"] = m.group(f"c{i}")
        objects.append(obj)
    rel = m.group("rel")
    if len(objects) == 2 and rel != "and":
        return make_metadata("position", objects, rel)
    if len(objects) == 2:
        tag = "color_attr" if all("color" in o for o in objects) else "two_object"
        return make_metadata(tag, objects)
    obj = objects[0]
    tag = "counting" if obj["count"] > 1 else "colors" if "color" in obj else "single_object"
    return make_metadata(tag, objects)


_SENTENCES = re.compile(r"[.;:!?\n]+")
_LONGEST_PROMPT = 12  # words in the longest prompt `phrase` writes ("a photo of a blue star left of ...")


def find_prompt(text: str) -> Metadata | None:
    """The first GenEval-style request stated anywhere in free text, the longest one at its place,
    as metadata; None when the text states none. Sentences are read on their own, punctuation dropped:
    "Exactly two red circles, both large, on grey." -> counting metadata for two red circles."""
    for sentence in _SENTENCES.split(text.lower()):
        words = re.findall(r"[a-z]+", sentence)
        for start in range(len(words)):
            for end in range(min(len(words), start + _LONGEST_PROMPT), start, -1):
                try:
                    return parse_prompt(" ".join(words[start:end]))
                except LensError:
                    continue
    return None
