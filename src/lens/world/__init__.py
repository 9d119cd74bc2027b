"""A procedural world of flat coloured shapes, for training and evaluating Lens at laptop scale.

Scenes (`Scene`, a JSON-able scene graph) hold 1-4 shapes on a near-neutral background; they render
at any height x width that is a multiple of 16, come with a dense and a brief caption, and are
deterministic by seed. See lens.eval for the GenEval-style benchmark over this world.
"""

from lens.world.captions import brief_caption, dense_caption
from lens.world.geneval import TAGS, make_metadata, parse_prompt, phrase, random_metadata
from lens.world.reasoner import reason, rewrite_prompt
from lens.world.relations import object_box, relative_position
from lens.world.render import render_scene
from lens.world.sampler import build_scene, random_scene, sample_scene, scene_for_metadata
from lens.world.scene import Background, Relation, Scene, SceneObject
from lens.world.shards import WorldSample, make_sample, read_shards, write_shards
from lens.world.vocab import COLORS, RELATIONS, SHAPES, SIZES

__all__ = [
    "COLORS",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "TAGS",
    "Background",
    "Relation",
    "Scene",
    "SceneObject",
    "WorldSample",
    "brief_caption",
    "build_scene",
    "dense_caption",
    "make_metadata",
    "make_sample",
    "object_box",
    "parse_prompt",
    "phrase",
    "random_metadata",
    "random_scene",
    "read_shards",
    "reason",
    "relative_position",
    "render_scene",
    "rewrite_prompt",
    "sample_scene",
    "scene_for_metadata",
    "write_shards",
]
