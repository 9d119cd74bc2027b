"""Scene sampling: determinism, JSON round trip, layout constraints and GenEval-driven scenes."""

import itertools

import numpy as np
import pytest

from lens.errors import LensError
from lens.world import (
    COLORS,
    SHAPES,
    Scene,
    object_box,
    random_scene,
    relative_position,
    render_scene,
    sample_scene,
    scene_for_metadata,
)
from lens.world.geneval import make_metadata
from lens.world.layout import MARGIN


def test_same_seed_same_scene_and_pixels():
    a, b = sample_scene(123), sample_scene(123)
    assert a.to_json() == b.to_json()
    assert np.array_equal(np.asarray(render_scene(a, 64, 96)), np.asarray(render_scene(b, 64, 96)))
    assert sample_scene(124).to_json() != a.to_json()


def test_json_round_trip_renders_identically():
    scene = sample_scene(7)
    back = Scene.from_json(scene.to_json())
    assert back == scene
    assert np.array_equal(np.asarray(render_scene(back, 64, 64)), np.asarray(render_scene(scene, 64, 64)))


def test_free_scenes_cover_vocabulary_and_respect_layout():
    scenes = [random_scene(s) for s in range(200)]
    counts = {len(s.objects) for s in scenes}
    assert counts == {1, 2, 3, 4}
    assert {o.shape for s in scenes for o in s.objects} == set(SHAPES)
    assert {o.color for s in scenes for o in s.objects} == set(COLORS)
    assert {o.size for s in scenes for o in s.objects} == {"small", "medium", "large"}
    assert {s.background.kind for s in scenes} == {"plain", "gradient", "texture"}
    for s in scenes:
        for o in s.objects:  # inside the unit square with a margin: inside the frame at any aspect
            assert o.x - o.radius >= MARGIN - 1e-9 and o.x + o.radius <= 1 - MARGIN + 1e-9
            assert o.y - o.radius >= MARGIN - 1e-9 and o.y + o.radius <= 1 - MARGIN + 1e-9
        for a, b in itertools.combinations(s.objects, 2):
            assert np.hypot(a.x - b.x, a.y - b.y) > a.radius + b.radius
        # black never sits on a dark background, white never on a light one
        colors = {o.color for o in s.objects}
        assert not ("black" in colors and s.background.tone == "dark")
        assert not ("white" in colors and s.background.tone == "light")


@pytest.mark.parametrize("relation", ["left of", "right of", "above", "below"])
def test_scene_for_position_metadata_holds_at_every_aspect(relation):
    md = make_metadata("position", [{"class": "star", "count": 1}, {"class": "square", "count": 1}], relation)
    for seed in range(20):
        scene = scene_for_metadata(md, seed)
        target, mover = scene.objects  # include order: the target first
        assert (mover.shape, target.shape) == ("star", "square")
        for h, w in ((64, 64), (64, 128), (128, 64), (96, 64)):
            assert relation in relative_position(object_box(mover, h, w), object_box(target, h, w))


def test_scene_for_counting_and_colour_metadata():
    md = make_metadata("counting", [{"class": "heart", "count": 4, "color": "blue"}])
    for seed in range(10):
        scene = scene_for_metadata(md, seed, distractors=2)  # no room left for distractors
        assert [(o.shape, o.color) for o in scene.objects] == [("heart", "blue")] * 4
    md = make_metadata(
        "color_attr",
        [{"class": "ring", "count": 1, "color": "white"}, {"class": "cross", "count": 1, "color": "black"}],
    )
    scene = scene_for_metadata(md, 3, distractors=1)
    assert [(o.shape, o.color) for o in scene.objects[:2]] == [("ring", "white"), ("cross", "black")]
    assert scene.background.tone == "mid"  # the only tone that shows both
    assert len(scene.objects) == 3 and scene.objects[2].shape not in ("ring", "cross")


def test_bad_scene_graph_and_metadata_raise_lens_error():
    with pytest.raises(LensError, match="scene graph"):
        Scene.from_dict({"objects": []})
    bad = sample_scene(1).to_dict()
    bad["objects"][0]["shape"] = "pentagon"
    with pytest.raises(LensError, match="unknown shape"):
        Scene.from_dict(bad)
    with pytest.raises(LensError, match="metadata"):
        scene_for_metadata({"tag": "counting"}, 0)
    with pytest.raises(LensError, match="1 to 4"):
        scene_for_metadata(make_metadata("counting", [{"class": "star", "count": 5}]), 0)


def test_object_scale_grows_every_object_and_keeps_scenes_valid():
    from lens.world.sampler import sample_scene

    for seed in range(40):
        base = sample_scene(seed)
        big = sample_scene(seed, object_scale=1.8)
        assert [o.shape for o in big.objects] == [o.shape for o in base.objects]
        for o in big.objects:  # inside the image with the layout's margin, whatever the count
            assert o.x - o.radius >= MARGIN and o.x + o.radius <= 1 - MARGIN
            assert o.y - o.radius >= MARGIN and o.y + o.radius <= 1 - MARGIN
    one = [sample_scene(s, objects=1, object_scale=1.8).objects[0] for s in range(20)]
    ref = [sample_scene(s, objects=1).objects[0] for s in range(20)]
    assert np.mean([o.radius for o in one]) / np.mean([o.radius for o in ref]) == pytest.approx(1.8, rel=0.05)
    for bad in (0.1, 2.5):
        with pytest.raises(LensError, match="object scale"):
            sample_scene(0, object_scale=bad)
