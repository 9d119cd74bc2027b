"""The scene graph: what a scene contains, as JSON-able dataclasses.

Positions are normalised: `x` runs 0..1 across the width and `y` 0..1 down the height, so one scene
renders at any aspect ratio. `radius` is the shape's circumradius as a fraction of the image's
shorter side, so shapes keep their proportions (a circle stays round) whatever the aspect.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from lens.errors import LensError
from lens.world.vocab import RELATIONS, check_color, check_shape, check_size


@dataclass
class SceneObject:
    shape: str
    color: str
    size: str  # small / medium / large
    x: float  # centre, fraction of the width
    y: float  # centre, fraction of the height (0 = top)
    radius: float  # circumradius, fraction of the shorter image side
    rgb: tuple[int, int, int]  # the exact fill colour (the named colour, slightly jittered)


@dataclass
class Background:
    kind: str  # plain / gradient / texture
    tone: str  # light / dark
    name: str  # e.g. "light grey"
    rgb: tuple[int, int, int]
    # gradient: second colour and direction; texture: pattern name and a seed for its noise.
    rgb2: tuple[int, int, int] | None = None
    name2: str | None = None
    direction: str | None = None  # vertical / horizontal / diagonal
    pattern: str | None = None  # stripes / checker / speckle
    pattern_seed: int = 0


@dataclass
class Relation:
    subject: int  # index into Scene.objects
    relation: str  # one of vocab.RELATIONS
    object: int


@dataclass
class Scene:
    objects: list[SceneObject]
    background: Background
    relations: list[Relation] = field(default_factory=list)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scene:
        try:
            objects = [SceneObject(**{**o, "rgb": tuple(o["rgb"])}) for o in d["objects"]]
            bg = dict(d["background"])
            bg["rgb"] = tuple(bg["rgb"])
            if bg.get("rgb2") is not None:
                bg["rgb2"] = tuple(bg["rgb2"])
            scene = cls(
                objects=objects,
                background=Background(**bg),
                relations=[Relation(**r) for r in d.get("relations", [])],
                seed=int(d.get("seed", 0)),
            )
        except (KeyError, TypeError) as err:
            raise LensError(
                f"not a scene graph ({err}); pass the `json` entry written by lens world"
            ) from err
        return scene.validate()

    @classmethod
    def from_json(cls, text: str) -> Scene:
        return cls.from_dict(json.loads(text))

    def validate(self) -> Scene:
        if not self.objects:
            raise LensError("a scene needs at least one object")
        for o in self.objects:
            check_shape(o.shape)
            check_color(o.color)
            check_size(o.size)
            if not (0.0 <= o.x <= 1.0 and 0.0 <= o.y <= 1.0):
                raise LensError(f"object position ({o.x}, {o.y}) is outside 0..1; positions are normalised")
            if not 0.0 < o.radius < 0.5:
                raise LensError(f"object radius {o.radius} must be in (0, 0.5) of the shorter side")
        for r in self.relations:
            if r.relation not in RELATIONS or not (
                0 <= r.subject < len(self.objects) and 0 <= r.object < len(self.objects)
            ):
                raise LensError(f"bad relation {r}; relations name two object indices and one of {RELATIONS}")
        return self
