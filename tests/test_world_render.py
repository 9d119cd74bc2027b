"""Rendering: any height x width multiple of 16, same layout at every aspect, anti-aliased edges."""

import numpy as np
import pytest

from lens.errors import LensError
from lens.resolution import parse_size
from lens.world import render_scene, sample_scene
from lens.world.background import render_background
from lens.world.sampler import build_scene

SIZES = [(64, 64), (64, 96), (96, 64), (128, 128), (48, 160), (32, 32)]


def _foreground(scene, h, w):
    img = np.asarray(render_scene(scene, h, w)).astype(float)
    bg = render_background(scene.background, h, w)
    return np.abs(img - bg).max(axis=-1) > 60  # (H, W) pixels well inside objects


@pytest.mark.parametrize("size", SIZES)
def test_renders_any_multiple_of_16(size):
    h, w = size
    img = render_scene(sample_scene(3), h, w)
    assert img.size == (w, h) and img.mode == "RGB"


def test_same_scene_same_normalised_layout_at_every_aspect():
    scene = build_scene([{"shape": "circle", "color": "red"}], seed=5)
    obj = scene.objects[0]
    for h, w in [(64, 64), (64, 128), (128, 64), (96, 160)]:
        fg = _foreground(scene, h, w)
        ys, xs = np.nonzero(fg)
        assert abs((xs.mean() + 0.5) / w - obj.x) < 0.02 and abs((ys.mean() + 0.5) / h - obj.y) < 0.02
        # shapes never stretch: the circle is as wide as it is tall, sized by the shorter side
        width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        assert abs(width - height) <= 1
        assert abs(width - 2 * obj.radius * min(h, w)) <= 2


def test_edges_are_anti_aliased():
    scene = build_scene([{"shape": "triangle", "color": "blue"}], seed=2)
    scene.background.kind = "plain"
    img = np.asarray(render_scene(scene, 64, 64)).astype(float)
    bg, fill = np.asarray(scene.background.rgb, float), np.asarray(scene.objects[0].rgb, float)
    # project each pixel onto the bg -> fill segment: partial coverage shows as values strictly between
    t = ((img - bg) @ (fill - bg)) / ((fill - bg) @ (fill - bg))
    partial = (t > 0.1) & (t < 0.9)
    assert partial.sum() >= 20  # a hard-edged raster would have none
    assert len(np.unique(np.round(t[partial], 2))) >= 8  # many coverage levels, not one dither step


def test_bad_sizes_raise_lens_error():
    assert parse_size("64x96") == (64, 96)
    for text in ("60x64", "64", "axb", "0x64"):
        with pytest.raises(LensError):
            parse_size(text)
    with pytest.raises(LensError, match="multiple of 16"):
        render_scene(sample_scene(0), 64, 70)
