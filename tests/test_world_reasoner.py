"""The nano reasoner: short GenEval-style prompts -> dense captions that keep every requirement."""

import re

import pytest

from lens.errors import LensError
from lens.eval import detect, evaluate, nano_prompts
from lens.world import dense_caption, parse_prompt, phrase, reason, render_scene, rewrite_prompt
from lens.world.compact import RELATIONS as COMPACT_RELATIONS
from lens.world.vocab import NUMBERS, plural

PROMPTS = nano_prompts()


def test_parse_inverts_phrase_for_every_suite_prompt():
    for md in PROMPTS:
        assert phrase(md) == md["prompt"]
        assert parse_prompt(md["prompt"]) == md


# how each style states the prompt's relation (verbose: its first wording, compact: any of its own)
KEPT_WORDS = {
    "verbose": {
        "left of": ("to the left of",),
        "right of": ("to the right of",),
        "above": ("above",),
        "below": ("below",),
    },
    "compact": COMPACT_RELATIONS,
}


@pytest.mark.parametrize("style", ["compact", "verbose"])
def test_dense_caption_mentions_every_requirement_in_every_category(style):
    tags = set()
    for md in PROMPTS:
        text, scene = reason(md["prompt"], style=style)
        tags.add(md["tag"])
        n_words = len(text.split())
        assert (n_words >= 50) if style == "verbose" else (n_words <= 47), (style, text)
        for req in md["include"]:
            n, shape, color = req["count"], req["class"], req.get("color")
            if n > 1:
                assert f"{NUMBERS[n]} " in text.lower() and plural(shape) in text, (md["prompt"], text)
                assert sum(o.shape == shape for o in scene.objects) == n
            assert shape in text
            if color:
                assert f"{color} {shape}" in text or f"{color} {plural(shape)}" in text
        if md["tag"] == "position":
            target, mover = md["include"][0]["class"], md["include"][1]["class"]
            words = "|".join(KEPT_WORDS[style][md["include"][1]["position"][0]])
            assert re.search(rf"\b{mover} is (?:{words}) the {target}\b", text), text
    assert tags == {"single_object", "two_object", "counting", "colors", "position", "color_attr"}


def test_reasoned_scene_satisfies_its_prompt_when_rendered():
    for md in PROMPTS[::8]:
        _, scene = reason(md["prompt"])
        correct, why = evaluate(detect(render_scene(scene, 64, 64)), md)
        assert correct, (md["prompt"], why)


def test_reasoner_writes_compact_captions_by_default_and_verbose_on_request():
    p = "a photo of two red circles"
    text, scene = reason(p)
    assert text == dense_caption(scene, style="compact") == rewrite_prompt(p, style="compact")
    verbose, same = reason(p, style="verbose")
    assert same == scene and verbose == dense_caption(scene, style="verbose")
    assert len(verbose.split()) > 2 * len(text.split())
    assert "two circles" in text.lower() and len(re.findall(r"\ba [a-z-]+ red circle ", text)) == 2
    assert "two red circles" in verbose
    with pytest.raises(LensError, match="unknown caption style 'long'"):
        rewrite_prompt(p, style="long")


def test_reasoner_is_deterministic_and_rejects_unknown_prompts():
    p = "a photo of two red circles"
    assert rewrite_prompt(p) == rewrite_prompt(p)
    assert rewrite_prompt(p, seed=1) != rewrite_prompt(p, seed=2)
    assert rewrite_prompt(p, seed=1, style="verbose") != rewrite_prompt(p, seed=2, style="verbose")
    with pytest.raises(LensError, match="write it like GenEval"):
        rewrite_prompt("a photo of a cat")


def test_reasoner_lays_scenes_out_for_the_models_object_scale():
    # A model trained on a world drawn at --object-scale 1.8 draws its objects that large at the
    # caption's places: a layout for the world's own sizes puts them on top of each other.
    pair = "a photo of a red circle and a blue star"
    r_small, r_large = (sum(o.radius for o in reason(pair, object_scale=s)[1].objects) for s in (1.0, 1.8))
    assert 1.5 < r_large / r_small < 2.1  # laid out for objects about 1.8x as large
    p = "a photo of four squares"  # crowded: scaled back toward 1x rather than overlapping
    md = parse_prompt(p)
    small, large = reason(p)[1], reason(p, object_scale=1.8)[1]
    for scene in (small, large):  # never overlapping, at either scale, and still what was asked
        objs = scene.objects
        for i, a in enumerate(objs):
            for b in objs[i + 1 :]:
                assert ((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5 >= a.radius + b.radius
        assert evaluate(detect(render_scene(scene, 128, 128)), md)[0]
    for md in PROMPTS[::13]:  # every category still satisfied when laid out large
        _, scene = reason(md["prompt"], object_scale=1.8)
        assert evaluate(detect(render_scene(scene, 128, 128)), md)[0], md["prompt"]
    assert str(rewrite_prompt(p, object_scale=1.8)) != str(rewrite_prompt(p))


def test_world_reason_cli_takes_the_object_scale(capsys):
    from lens.cli import main

    p = "a photo of four hearts"
    assert main(["world", "reason", p, "--seed", "2", "--object-scale", "1.8"]) == 0
    assert capsys.readouterr().out.strip() == rewrite_prompt(p, 2, object_scale=1.8)
    assert main(["world", "reason", p, "--object-scale", "9"]) == 2
    assert "object scale must be in 0.5..2.0" in capsys.readouterr().err
