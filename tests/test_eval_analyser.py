"""The analyser: finds every rendered object with the right class, colour and box, and nothing in noise."""

from collections import Counter

import numpy as np
import pytest
from PIL import Image, ImageFilter

from lens.errors import LensError
from lens.eval import detect
from lens.world import Background, Scene, SceneObject, object_box, render_scene, sample_scene


def _matches(scene, h, w, image=None):
    dets = detect(image if image is not None else render_scene(scene, h, w))
    want = Counter((o.shape, o.color) for o in scene.objects)
    got = Counter((d.cls, d.color) for d in dets if d.confidence > 0.3)
    return want == got, dets


@pytest.mark.parametrize("size", [(64, 64), (64, 96), (128, 128)])
def test_detects_class_colour_and_box_of_every_object(size):
    h, w = size
    for seed in range(40):
        scene = sample_scene(1000 + seed)
        ok, dets = _matches(scene, h, w)
        assert ok, (seed, [(d.cls, d.color) for d in dets], [(o.shape, o.color) for o in scene.objects])
        for d in dets:
            assert d.confidence > 0.9  # clean shapes pass even GenEval's counting threshold
            obj = min(
                scene.objects,
                key=lambda o: (
                    abs(o.x * w - (d.bbox[0] + d.bbox[2]) / 2) + abs(o.y * h - (d.bbox[1] + d.bbox[3]) / 2)
                ),
            )
            assert np.allclose(d.bbox, object_box(obj, h, w), atol=2.0)  # thin tips fall under 50% coverage


def test_large_images_report_boxes_in_input_pixels():
    scene = sample_scene(5)
    ok, dets = _matches(scene, 768, 1024)
    assert ok
    for d in dets:
        assert any(np.allclose(d.bbox, object_box(o, 768, 1024), atol=4) for o in scene.objects)


def test_tolerates_soft_edges_and_mild_noise():
    rng = np.random.default_rng(0)
    hits = 0
    for seed in range(40):
        scene = sample_scene(2000 + seed)
        img = render_scene(scene, 64, 64).filter(ImageFilter.GaussianBlur(0.8))
        noisy = np.clip(np.asarray(img, float) + rng.normal(0, 4, (64, 64, 3)), 0, 255).astype(np.uint8)
        hits += _matches(scene, 64, 64, Image.fromarray(noisy))[0]
    assert hits >= 37


def test_touching_objects_of_different_colours_are_split():
    bg = Background("plain", "light", "white", (244, 244, 242))
    objs = [
        SceneObject("square", "red", "medium", 0.35, 0.5, 0.15, (214, 38, 38)),
        SceneObject("square", "blue", "medium", 0.56, 0.5, 0.15, (36, 84, 214)),  # overlapping the red one
    ]
    dets = detect(render_scene(Scene(objs, bg), 64, 64))
    assert sorted((d.cls, d.color) for d in dets) == [("square", "blue"), ("square", "red")]


def test_nothing_in_noise_or_blank_images():
    rng = np.random.default_rng(1)
    images = [
        rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
        np.clip(128 + rng.normal(0, 40, (64, 64, 3)), 0, 255).astype(np.uint8),
        np.asarray(
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((64, 64), Image.BILINEAR)
        ),
        np.full((64, 96, 3), 255, np.uint8),
        np.zeros((96, 64, 3), np.uint8),
    ]
    for img in images:
        assert all(d.confidence <= 0.3 for d in detect(img))


def test_bad_inputs_raise_lens_error():
    with pytest.raises(LensError, match="too small"):
        detect(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(LensError, match="RGB array"):
        detect(np.zeros((64, 64), np.uint8))
