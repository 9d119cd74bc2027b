"""The reward interface: resolving specs, the callable adapter's checks, the exact Nano-Eval reward."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from lens.errors import LensError
from lens.eval.prompts import nano_prompts
from lens.eval.reference import reference_seed
from lens.rewards import Reward, resolve_reward
from lens.rewards.adapter import CallableReward
from lens.rewards.nano import NanoEvalReward
from lens.world.render import render_scene
from lens.world.sampler import scene_for_metadata

BLANK = [Image.new("RGB", (32, 32), (200, 200, 200)) for _ in range(3)]
PROMPTS = ["a", "b", "c"]


def redness(images, prompts, metadata):
    """A user's reward: the mean red share of each image, for `module:function` specs."""
    return [float(np.asarray(im, np.float32)[..., 0].mean() / 255) for im in images]


def test_module_function_spec_is_adapted_and_checked():
    reward = resolve_reward("tests.test_rewards:redness")
    assert isinstance(reward, CallableReward) and isinstance(reward, Reward)
    red, grey = Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (51, 51, 51))
    assert reward([red, grey], ["x", "y"], [None, None]) == pytest.approx([1.0, 0.2])
    with pytest.raises(LensError, match="one prompt and one metadata entry per image"):
        reward([red], ["x", "y"], [None])


@pytest.mark.parametrize(
    "spec, match",
    [
        ("nope", "unknown reward 'nope'; use nano-eval or judge"),
        (":f", "unknown reward"),
        ("lens_no_such_module:f", "cannot import 'lens_no_such_module'"),
        ("math:no_such_function", "'math' has no 'no_such_function'"),
        ("math:pi", "is not callable"),
    ],
)
def test_bad_specs_fail_with_one_clear_line(spec, match):
    with pytest.raises(LensError, match=match) as err:
        resolve_reward(spec)
    assert "\n" not in str(err.value)


def test_settings_for_a_plain_function_are_refused():
    with pytest.raises(LensError, match="takes no settings"):
        resolve_reward("tests.test_rewards:redness", strict=True)


@pytest.mark.parametrize(
    "returned, match",
    [
        ([0.5, 0.5], "returned 2 scores for 3 images"),
        ([0.5, math.nan, 0.5], "returned nan for image 1"),
        ([0.5, 0.5, math.inf], "returned inf for image 2"),
        ([1.5, 0.5, 0.5], "returned 1.5 for image 0; scores must be finite and in \\[0, 1\\]"),
        ([-0.1, 0.5, 0.5], "returned -0.1 for image 0"),
        ([0.5, "high", 0.5], "returned 'high' for image 1; scores must be numbers"),
        (0.5, "returned float; return a list of 3 floats"),
    ],
)
def test_a_callable_that_breaks_the_contract_is_named(returned, match):
    reward = CallableReward(lambda *a: returned, name="mine")
    with pytest.raises(LensError, match=f"reward mine {match}"):
        reward(BLANK, PROMPTS, [None] * 3)


@pytest.mark.parametrize("make", [np.array, torch.tensor, tuple])
def test_arrays_and_tensors_are_accepted(make):
    reward = CallableReward(lambda *a: make([0.0, 0.25, 1.0]))
    assert reward(BLANK, PROMPTS, [None] * 3) == [0.0, 0.25, 1.0]


def _world(n_per_tag=2):
    """n_per_tag prompts of every tag and the world's own render of each (correct images)."""
    prompts = nano_prompts()
    picked, seen = [], {}
    for i, md in enumerate(prompts):
        if seen.setdefault(md["tag"], 0) < n_per_tag:
            seen[md["tag"]] += 1
            picked.append((i, md))
    images = [render_scene(scene_for_metadata(md, reference_seed(0, i, 0)), 64, 64) for i, md in picked]
    return images, [md for _, md in picked]


def test_nano_eval_reward_scores_correct_renders_1_and_others_lower():
    images, metadata = _world()
    reward = resolve_reward("nano-eval")
    assert isinstance(reward, NanoEvalReward)
    texts = [md["prompt"] for md in metadata]
    assert reward(images, texts, metadata) == [1.0] * len(images)
    assert resolve_reward("nano-eval", strict=True)(images, texts, metadata) == [1.0] * len(images)
    # each image scored against a prompt of the next tag, which asks for more than it shows
    images, wrong = images[:-2], metadata[2:]
    partial = reward(images, [md["prompt"] for md in wrong], wrong)
    strict = resolve_reward("nano-eval", strict=True)(images, [md["prompt"] for md in wrong], wrong)
    assert all(p < 1.0 for p in partial) and strict == [0.0] * len(images)
    assert any(0.0 < p < 1.0 for p in partial)  # some rules of the wrong prompt still hold


def test_nano_eval_partial_credit_is_the_share_of_rules_passed():
    # a blue square left of a red circle, judged as "a green square left of a red circle"
    from lens.world.geneval import make_metadata

    circle = {"class": "circle", "count": 1, "color": "red"}
    drawn = make_metadata("position", [{"class": "square", "count": 1, "color": "blue"}, circle], "left of")
    asked = make_metadata("position", [{"class": "square", "count": 1, "color": "green"}, circle], "left of")
    image = render_scene(scene_for_metadata(drawn, 3), 64, 64)
    reward = NanoEvalReward()
    assert reward([image], [drawn["prompt"]], [drawn]) == [1.0]
    # rules: count circle, colour red circle, count square, colour green square (fails) and the
    # square's position, which needs the square matched first (fails with it): 3 of 5
    assert reward([image], [asked["prompt"]], [asked]) == [pytest.approx(3 / 5)]


def test_nano_eval_reward_needs_metadata():
    with pytest.raises(LensError, match="needs GenEval metadata for image 1"):
        NanoEvalReward()(BLANK[:2], ["a photo of a circle"] * 2, [nano_prompts()[0], None])
    with pytest.raises(LensError, match="not GenEval metadata"):
        NanoEvalReward()(BLANK[:1], ["x"], [{"tag": "nope"}])
