"""The nano reasoner: short GenEval-style prompts -> dense captions that keep every requirement."""

import pytest

from lens.errors import LensError
from lens.eval import detect, evaluate, nano_prompts
from lens.world import parse_prompt, phrase, reason, render_scene, rewrite_prompt
from lens.world.vocab import NUMBERS, plural

PROMPTS = nano_prompts()


def test_parse_inverts_phrase_for_every_suite_prompt():
    for md in PROMPTS:
        assert phrase(md) == md["prompt"]
        assert parse_prompt(md["prompt"]) == md


def test_dense_caption_mentions_every_requirement_in_every_category():
    tags = set()
    for md in PROMPTS:
        text, scene = reason(md["prompt"])
        tags.add(md["tag"])
        assert len(text.split()) >= 50
        for req in md["include"]:
            n, shape, color = req["count"], req["class"], req.get("color")
            if n > 1:
                assert f"{NUMBERS[n]} " in text and plural(shape) in text, (md["prompt"], text)
                assert sum(o.shape == shape for o in scene.objects) == n
            assert shape in text
            if color:
                assert f"{color} {shape}" in text or f"{color} {plural(shape)}" in text
        if md["tag"] == "position":
            target, mover = md["include"][0]["class"], md["include"][1]["class"]
            words = {
                "left of": "to the left of",
                "right of": "to the right of",
                "above": "above",
                "below": "below",
            }
            relation = md["include"][1]["position"][0]
            assert f"{mover} is {words[relation]} the {target}" in text, text
    assert tags == {"single_object", "two_object", "counting", "colors", "position", "color_attr"}


def test_reasoned_scene_satisfies_its_prompt_when_rendered():
    for md in PROMPTS[::8]:
        _, scene = reason(md["prompt"])
        correct, why = evaluate(detect(render_scene(scene, 64, 64)), md)
        assert correct, (md["prompt"], why)


def test_reasoner_is_deterministic_and_rejects_unknown_prompts():
    p = "a photo of two red circles"
    assert rewrite_prompt(p) == rewrite_prompt(p)
    assert rewrite_prompt(p, seed=1) != rewrite_prompt(p, seed=2)
    assert "two red circles" in rewrite_prompt(p)
    with pytest.raises(LensError, match="write it like GenEval"):
        rewrite_prompt("a photo of a cat")
