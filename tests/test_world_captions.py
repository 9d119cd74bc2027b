"""Captions: the dense caption names everything (and is long and varied); the brief one is alt-text."""

import re
from collections import Counter

import numpy as np

from lens.world import brief_caption, dense_caption, sample_scene
from lens.world.captions import salient
from lens.world.sampler import build_scene
from lens.world.vocab import NUMBERS, plural

SCENES = [sample_scene(s) for s in range(200)]


def test_dense_caption_names_every_object_colour_shape_and_size():
    size_words = {
        "small": ("small", "little"),
        "medium": ("medium-sized", "mid-sized"),
        "large": ("large", "big"),
    }
    for scene in SCENES:
        text = dense_caption(scene)
        for o in scene.objects:
            # each object gets a phrase "<size> <colour> <shape>" (shape words may carry a qualifier)
            pattern = rf"\b({'|'.join(size_words[o.size])}) {o.color} [a-z\- ]*?{o.shape}\b"
            assert re.search(pattern, text), (pattern, text)
        assert scene.background.name in text


def test_dense_caption_states_counts_and_relations():
    scene = build_scene(
        [{"shape": "circle", "color": "red"}] * 3 + [{"shape": "star", "color": "blue"}], seed=4
    )
    text = dense_caption(scene)
    assert "three red circles" in text and "a blue star" in text
    assert "four objects" in text
    rel_words = (
        "left",
        "right",
        "above",
        "below",
        "beneath",
        "over",
        "higher",
        "lower",
        "next to",
        "beside",
        "close to",
    )
    relation_sentences = [
        s for s in text.split(". ") if any(w in s for w in rel_words) and s.startswith("The ")
    ]
    assert len(relation_sentences) >= min(len(scene.relations), 4) > 0


def test_dense_captions_are_long_and_varied():
    texts = [dense_caption(s) for s in SCENES]
    lengths = [len(t.split()) for t in texts]
    assert np.mean(lengths) >= 60 and min(lengths) >= 40
    openers = Counter(" ".join(t.split()[:3]) for t in texts)
    assert len(openers) >= 4 and openers.most_common(1)[0][1] < 0.5 * len(texts)
    assert len(set(texts)) == len(texts)


def test_captions_are_deterministic_and_seed_selects_phrasing():
    scene = SCENES[0]
    assert dense_caption(scene) == dense_caption(sample_scene(0))
    assert brief_caption(scene) == brief_caption(sample_scene(0))
    assert len({dense_caption(scene, seed=k) for k in range(6)}) > 1


def test_brief_caption_names_one_salient_object():
    for scene in SCENES[:100]:
        text = brief_caption(scene)
        big = salient(scene)
        assert f"{big.color} {big.shape}" in text
        assert len(text.split()) <= 10
        assert not any(n in text.split() for n in NUMBERS.values())
        others = {o.shape for o in scene.objects if o.shape != big.shape}
        assert not any(re.search(rf"\b({s}|{plural(s)})\b", text) for s in others)
