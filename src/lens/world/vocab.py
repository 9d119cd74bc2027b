"""The world's vocabulary: shapes, colours, sizes, relations and the words used for them.

Colour names are GenEval's ten (its colour classifier chooses among exactly these). Sizes are the
circumradius of a shape as a fraction of the image's shorter side, so a scene keeps its proportions
at any aspect ratio and shapes never stretch.
"""

from __future__ import annotations

from lens.errors import LensError

SHAPES = ("circle", "square", "triangle", "star", "ring", "diamond", "cross", "heart")
PLURALS = {s: s + "es" if s.endswith(("s", "x", "sh", "ch")) else s + "s" for s in SHAPES}

# Canonical sRGB of each colour; the renderer jitters around these a little.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (214, 38, 38),
    "orange": (245, 136, 24),
    "yellow": (245, 212, 30),
    "green": (44, 160, 64),
    "blue": (36, 84, 214),
    "purple": (128, 52, 172),
    "pink": (244, 134, 190),
    "brown": (128, 76, 36),
    "black": (22, 22, 22),
    "white": (246, 246, 246),
}
CHROMATIC = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
# Black and white objects need a background of the opposite lightness (or mid grey) to stay visible.
LIGHT_ONLY = ("black",)  # allowed on light backgrounds only
DARK_ONLY = ("white",)  # allowed on dark backgrounds only

SIZES: dict[str, float] = {"small": 0.115, "medium": 0.155, "large": 0.205}
RELATIONS = ("left of", "right of", "above", "below", "next to")
GENEVAL_RELATIONS = ("left of", "right of", "above", "below")
INVERSE = {
    "left of": "right of",
    "right of": "left of",
    "above": "below",
    "below": "above",
    "next to": "next to",
}

NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
WORD_TO_NUMBER = {w: n for n, w in NUMBERS.items()}
MAX_OBJECTS = 4


def plural(shape: str, count: int = 2) -> str:
    return shape if count == 1 else PLURALS[shape]


def singular(word: str) -> str | None:
    """The shape named by a singular or plural noun, or None."""
    if word in SHAPES:
        return word
    for shape, p in PLURALS.items():
        if word == p:
            return shape
    return None


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def check_shape(shape: str) -> str:
    if shape not in SHAPES:
        raise LensError(f"unknown shape {shape!r}; use one of {', '.join(SHAPES)}")
    return shape


def check_color(color: str) -> str:
    if color not in COLORS:
        raise LensError(f"unknown colour {color!r}; use one of {', '.join(COLORS)}")
    return color


def check_size(size: str) -> str:
    if size not in SIZES:
        raise LensError(f"unknown size {size!r}; use one of {', '.join(SIZES)}")
    return size
