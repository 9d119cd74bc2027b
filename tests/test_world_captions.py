"""Captions: the dense caption names everything (compact: in ~40 words; verbose: long and varied); the
brief one is alt-text."""

import re
from collections import Counter

import numpy as np
import pytest

from lens.errors import LensError
from lens.world import Relation, brief_caption, dense_caption, sample_scene
from lens.world.captions import salient
from lens.world.compact import PLACES, RELATIONS, SIZES
from lens.world.phrases import refer, region
from lens.world.sampler import build_scene
from lens.world.vocab import NUMBERS, article, plural

SCENES = [sample_scene(s) for s in range(200)]


def test_verbose_caption_names_every_object_colour_shape_and_size():
    size_words = {
        "small": ("small", "little"),
        "medium": ("medium-sized", "mid-sized"),
        "large": ("large", "big"),
    }
    for scene in SCENES:
        text = dense_caption(scene, style="verbose")
        for o in scene.objects:
            # each object gets a phrase "<size> <colour> <shape>" (shape words may carry a qualifier)
            pattern = rf"\b({'|'.join(size_words[o.size])}) {o.color} [a-z\- ]*?{o.shape}\b"
            assert re.search(pattern, text), (pattern, text)
        assert scene.background.name in text


def test_verbose_caption_states_counts_and_relations():
    scene = build_scene(
        [{"shape": "circle", "color": "red"}] * 3 + [{"shape": "star", "color": "blue"}], seed=4
    )
    text = dense_caption(scene, style="verbose")
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


def test_verbose_captions_are_long_and_varied():
    texts = [dense_caption(s, style="verbose") for s in SCENES]
    lengths = [len(t.split()) for t in texts]
    assert np.mean(lengths) >= 60 and min(lengths) >= 40
    openers = Counter(" ".join(t.split()[:3]) for t in texts)
    assert len(openers) >= 4 and openers.most_common(1)[0][1] < 0.5 * len(texts)
    assert len(set(texts)) == len(texts)


@pytest.mark.parametrize("style", ["compact", "verbose"])
def test_captions_are_deterministic_and_seed_selects_phrasing(style):
    scene = SCENES[0]
    assert dense_caption(scene, style=style) == dense_caption(sample_scene(0), style=style)
    assert brief_caption(scene) == brief_caption(sample_scene(0))
    assert len({dense_caption(scene, seed=k, style=style) for k in range(6)}) > 1


def test_compact_is_the_default_style_and_unknown_styles_are_refused():
    scene = SCENES[0]
    assert dense_caption(scene) == dense_caption(scene, style="compact")
    assert dense_caption(scene) != dense_caption(scene, style="verbose")
    with pytest.raises(LensError, match=r"unknown caption style 'long'; use one of compact, verbose$"):
        dense_caption(scene, style="long")


def _compact_phrase(o) -> str:
    """Regex of an object's compact phrase: '<article> <size> <colour> <shape> <place>', then a break."""
    places = "|".join(PLACES[region(o)])
    return rf"\b[Aa]n? (?:{'|'.join(SIZES[o.size])}) {o.color} {o.shape} (?:{places})(?=[,.]| and | on )"


def test_compact_caption_names_every_object_in_reading_order():
    rows = ("top", "middle", "bottom")
    for scene in SCENES:
        text = dense_caption(scene)
        objs = sorted(scene.objects, key=lambda o: (rows.index(region(o)[0]), o.x))
        starts = []
        for o in objs:
            match = re.search(_compact_phrase(o), text)
            assert match, (_compact_phrase(o), text)
            starts.append(match.start())
        assert starts == sorted(starts), text
        bg = scene.background
        assert bg.name in text and (bg.name2 is None or bg.name2 in text), text


def test_compact_caption_counts_each_shape_or_all_shapes():
    seen = Counter()
    for scene in SCENES:
        if len(scene.objects) == 1:
            continue
        text = dense_caption(scene).lower()
        shapes = Counter(o.shape for o in scene.objects)
        if len(shapes) <= 2:
            for shape, n in shapes.items():
                count = f"{article(shape)} {shape}" if n == 1 else f"{NUMBERS[n]} {plural(shape)}"
                assert re.search(rf"\b{count}\b", text), (count, text)
        else:
            assert f"{NUMBERS[len(scene.objects)]} shapes" in text, text
        seen[len(shapes) <= 2] += 1
    assert seen[True] > 20 and seen[False] > 20  # both forms were tested
    two = build_scene(
        [{"shape": "circle", "color": "red"}] * 2 + [{"shape": "star", "color": "blue"}], seed=4
    )
    assert "two circles and a star" in dense_caption(two).lower()


def test_compact_captions_are_short_and_varied():
    scenes = [sample_scene(s) for s in range(500)]
    texts = [dense_caption(s) for s in scenes]
    lengths = [len(t.split()) for t in texts]
    assert max(lengths) <= 47 and np.mean(lengths) <= 36, (max(lengths), np.mean(lengths))
    openers = Counter(" ".join(t.split()[:3]) for t in texts)
    assert len(openers) >= 10 and openers.most_common(1)[0][1] < 0.2 * len(texts)
    heads = [t.split(":")[0] for t, s in zip(texts, scenes) if len(s.objects) > 1]
    forms = Counter("on" if h.startswith("On ") else "with" if " with " in h else "summary" for h in heads)
    assert len(forms) == 3 and min(forms.values()) > 0.2 * len(heads), forms  # every opener is drawn
    assert len(set(texts)) == len(texts)


@pytest.mark.parametrize(
    "relation, words", [("left of", ("left of", "to the left of")), ("above", ("above", "over"))]
)
def test_compact_caption_states_kept_relations_in_their_direction(relation, words):
    for seed in range(6):
        scene = build_scene(
            [{"shape": "circle", "color": "red"}, {"shape": "star", "color": "blue"}],
            seed=seed,
            constraints=[(0, relation, 1)],
        )
        text = dense_caption(scene, keep=[Relation(0, relation, 1)])
        assert re.search(rf"The circle is (?:{'|'.join(words)}) the star\.", text), text


def test_compact_caption_keeps_any_relation_even_in_busy_scenes():
    kept = 0
    for scene in SCENES:
        for rel in scene.relations[:2]:
            refs = refer(scene.objects, lambda s: SIZES[s][0], lambda rc: PLACES[rc][0])
            text = dense_caption(scene, keep=[rel])
            said = rf"{refs[rel.subject]} is (?:{'|'.join(RELATIONS[rel.relation])}) {refs[rel.object]}\."
            assert re.search(said, text, re.IGNORECASE), (said, text)
            kept += len(scene.objects) == 4
    assert kept > 10


def test_brief_caption_names_one_salient_object():
    for scene in SCENES[:100]:
        text = brief_caption(scene)
        big = salient(scene)
        assert f"{big.color} {big.shape}" in text
        assert len(text.split()) <= 10
        assert not any(n in text.split() for n in NUMBERS.values())
        others = {o.shape for o in scene.objects if o.shape != big.shape}
        assert not any(re.search(rf"\b({s}|{plural(s)})\b", text) for s in others)
