"""The colour-swap probe: swapped captions change only colour words, and the score reads a perfect
caption follower as 1 and a caption-blind model as 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lens.latents import LatentCodec
from lens.research.probes import (
    colour_swap,
    object_mask,
    probe_scenes,
    shape_swap,
    swap_colour,
    swap_shape,
    swapped_scene,
    x0_reader,
)
from lens.testing import tiny_random_pipeline
from lens.world.render import render_scene
from lens.world.vocab import COLORS

SIZE = (64, 64)


@pytest.fixture(scope="module")
def probes():
    return probe_scenes(12, objects=1, size=SIZE)


def _changed_words(a: str, b: str) -> set[tuple[str, str]]:
    wa, wb = a.split(), b.split()
    assert len(wa) == len(wb), (a, b)
    return {(x.strip(".,"), y.strip(".,")) for x, y in zip(wa, wb) if x != y}


def test_object_swap_changes_only_the_colour_words(probes):
    for p in probes:
        caption, old, new = swap_colour(p, "object")
        obj = p.scene.objects[0]
        changed = _changed_words(p.caption, caption) - {("a", "an"), ("an", "a")}
        (pair,) = changed
        assert pair[0] == obj.color and pair[1] != obj.color
        assert new == tuple(c / 255 for c in COLORS[pair[1]]) and old == tuple(c / 255 for c in obj.rgb)


def test_a_verbose_probe_swaps_within_its_own_style():
    from lens.world.captions import dense_caption

    (p,) = probe_scenes(1, objects=1, size=SIZE, style="verbose")
    caption, _, _ = swap_colour(p, "object")
    swapped = swapped_scene(p, "object")[0]
    assert p.style == "verbose" and p.caption == dense_caption(p.scene, p.seed, style="verbose")
    assert caption == dense_caption(swapped, p.seed, style="verbose")
    assert len(caption.split()) > 2 * len(dense_caption(swapped, p.seed).split())  # not the compact one
    changed = _changed_words(p.caption, caption) - {("a", "an"), ("an", "a")}
    assert {pair[0] for pair in changed} == {p.scene.objects[0].color}
    assert {pair[1] for pair in changed} == {swapped.objects[0].color}


def test_background_swap_flips_light_and_dark_plain_backgrounds_only(probes):
    swapped = 0
    for p in probes:
        got = swap_colour(p, "background")
        bg = p.scene.background
        if bg.kind != "plain" or bg.tone == "mid":
            assert got is None
            continue
        caption, old, new = got
        swapped += 1
        assert (sum(old) > 1.5) != (sum(new) > 1.5)  # light <-> dark
        new_name = swapped_scene(p, "background")[0].background.name
        only_the_name_changed = caption.replace(new_name, "X") == p.caption.replace(bg.name, "X")
        assert only_the_name_changed and caption != p.caption
    assert swapped > 0
    with pytest.raises(ValueError, match="object.*background"):
        swap_colour(probes[0], "sky")


def _renderer(probes, follow: bool, target: str):
    """An oracle x0 reader: the image of the scene each caption describes (follow), or always the true one."""
    scenes = {}
    for p in probes:
        scenes[p.caption] = p.scene
        got = swapped_scene(p, target)
        if got is not None:
            scenes[swap_colour(p, target)[0]] = got[0]

    def read(idx, captions, sigma):
        shown = [scenes[c] if follow else probes[i].scene for i, c in zip(idx, captions)]
        return np.stack([np.asarray(render_scene(s, *SIZE), np.float32) / 255 for s in shown])

    return read


def test_a_caption_follower_scores_one_and_a_blind_model_zero(probes):
    follow = colour_swap(_renderer(probes, True, "object"), probes, "object", sigmas=(1.0,))[1.0]
    blind = colour_swap(_renderer(probes, False, "object"), probes, "object", sigmas=(1.0,))[1.0]
    assert follow["n"] == len(probes)
    assert 0.95 < follow["swap"] < 1.05 and follow["anywhere"] > 0.8, follow
    assert blind["swap"] == 0.0 and blind["anywhere"] == 0.0, blind
    assert follow["error"] < 0.05  # the true caption's prediction is the true colour
    background = colour_swap(_renderer(probes, True, "background"), probes, "background", sigmas=(1.0,))[1.0]
    assert 0 < background["n"] < len(probes) and 0.95 < background["swap"] < 1.05, background


def test_shape_swap_reads_a_follower_as_one_a_blind_model_as_zero_and_a_colour_blob_low(probes):
    from lens.world.vocab import SHAPES

    renders = {}
    for p in probes:
        renders[p.caption] = p.pixels
        caption, pixels = swap_shape(p)
        words = _changed_words(p.caption, caption) - {("a", "an"), ("an", "a")}
        assert len(words) == 1 and all(w in SHAPES for w in next(iter(words))), words  # the shape word only
        renders[caption] = pixels

    def follower(idx, captions, sigma):
        return np.stack([renders[c] for c in captions])

    def blind(idx, captions, sigma):
        return np.stack([probes[i].pixels for i in idx])

    def blob(idx, captions, sigma):  # the object's colour spread over its bounding box, any caption
        out = []
        for i in idx:
            p = probes[i]
            m = object_mask(p.scene, *SIZE, index=0)
            ys, xs = np.nonzero(m)
            img = p.pixels.copy()
            img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = p.pixels[m].mean(0)
            out.append(img)
        return np.stack(out)

    assert 0.99 < shape_swap(follower, probes, (1.0,))[1.0]["swap"] < 1.01
    assert shape_swap(blind, probes, (1.0,))[1.0]["swap"] == 0.0
    assert shape_swap(blob, probes, (1.0,))[1.0]["swap"] == 0.0  # a blob is not a shape, whatever the word


def test_object_mask_covers_the_object_only():
    (p,) = probe_scenes(1, objects=1, size=SIZE)
    mask = object_mask(p.scene, *SIZE)
    obj = p.scene.objects[0]
    ys, xs = np.nonzero(mask)
    assert 0 < mask.mean() < 0.3
    assert abs(xs.mean() / SIZE[1] - obj.x) < 0.1 and abs(ys.mean() / SIZE[0] - obj.y) < 0.1


def test_x0_reader_runs_a_pipeline_end_to_end(probes):
    pipe = tiny_random_pipeline(height=SIZE[0], width=SIZE[1])
    read = x0_reader(pipe, probes)
    images = read([0, 2], [probes[0].caption, probes[2].caption], 0.5)
    assert images.shape == (2, *SIZE, 3) and images.min() >= 0 and images.max() <= 1
    # at sigma 0, x_t is the clean latent whatever the model says: the VAE's own reconstruction of
    # exactly the probes asked for, in the order asked
    codec = LatentCodec(pipe.vae)
    pixels = torch.from_numpy(np.stack([probes[2].pixels, probes[0].pixels])).permute(0, 3, 1, 2) * 2 - 1
    with torch.no_grad():
        recon = ((codec.decode(codec.encode(pixels)).clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    clean = read([2, 0], [probes[2].caption, probes[0].caption], 0.0)
    np.testing.assert_allclose(clean, recon, atol=1e-5)
    assert not np.allclose(clean[0], clean[1])
    rows = colour_swap(read, probes[:4], "object", sigmas=(0.5, 1.0))
    assert set(rows) == {0.5, 1.0} and all(np.isfinite(r["swap"]) for r in rows.values())
