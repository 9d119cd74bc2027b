"""GenEval's rules: the box-centre position rule (hand-computed cases) and include/exclude scoring."""

import pytest

from lens.eval import Detection, evaluate, summarize
from lens.eval.rules import keep_detections
from lens.world import make_metadata, relative_position


@pytest.mark.parametrize(
    "box_a, box_b, expected",
    [
        # offset (-20, 0), shrink 0.1 * (10 + 10) = 2 -> (-18, 0) / 20 = (-0.9, 0)
        ((0, 0, 10, 10), (20, 0, 30, 10), {"left of"}),
        # offset (-12, -12) -> (-10, -10) / 16.97 = (-0.59, -0.59): both relations
        ((0, 0, 10, 10), (12, 12, 22, 22), {"left of", "above"}),
        # offset (-10, -8) -> (-8, -6) / 12.81 = (-0.62, -0.47): only left of
        ((0, 0, 10, 10), (10, 8, 20, 18), {"left of"}),
        # offset (-10, -3) -> (-8, -1) / 10.44 = (-0.77, -0.10)
        ((-5, -5, 5, 5), (5, -2, 15, 8), {"left of"}),
        # offset (0, 20) -> (0, 18) / 20 = 0.9: below (y grows downwards)
        ((0, 20, 10, 30), (0, 0, 10, 10), {"below"}),
        ((30, 0, 40, 10), (0, 0, 10, 10), {"right of"}),
        # offset (-1, -1) is swallowed by the shrink: no relation at all
        ((0, 0, 10, 10), (1, 1, 11, 11), set()),
        # big boxes: offset (-10, 0) -> (-2, 0) / 10 = -0.2, under the 0.5 threshold
        ((0, 0, 40, 40), (10, 0, 50, 40), set()),
    ],
)
def test_relative_position_matches_hand_computed_geneval(box_a, box_b, expected):
    assert relative_position(box_a, box_b) == expected


def det(cls, conf=0.95, color="red", box=(0, 0, 10, 10)):
    return Detection(cls=cls, color=color, bbox=box, confidence=conf, area=50)


COUNT2 = make_metadata("counting", [{"class": "circle", "count": 2}])


def test_counting_needs_exact_count_at_confidence_above_0_9():
    assert evaluate([det("circle"), det("circle")], COUNT2)[0]
    ok, why = evaluate([det("circle")] * 3, COUNT2)  # the exclude (count + 1) fails it
    assert not ok and "circle<3" in why
    assert not evaluate([det("circle"), det("circle", conf=0.85)], COUNT2)[0]
    # a third, unsure circle is dropped by the 0.9 threshold and does not trip the exclude
    assert evaluate([det("circle"), det("circle"), det("circle", conf=0.5)], COUNT2)[0]


def test_other_tags_keep_detections_strictly_above_0_3():
    md = make_metadata("single_object", [{"class": "star", "count": 1}])
    assert evaluate([det("star", conf=0.31)], md)[0]
    assert not evaluate([det("star", conf=0.3)], md)[0]
    assert not evaluate([det("heart")], md)[0]


def test_colour_is_checked_on_the_most_confident_detections():
    md = make_metadata("colors", [{"class": "circle", "count": 1, "color": "red"}])
    assert evaluate([det("circle", 0.9, "red"), det("circle", 0.5, "blue")], md)[0]
    assert not evaluate([det("circle", 0.5, "red"), det("circle", 0.9, "blue")], md)[0]


def test_position_against_the_target_group():
    md = make_metadata(
        "position", [{"class": "star", "count": 1}, {"class": "square", "count": 1}], "left of"
    )
    star_left, square_right = (0, 0, 10, 10), (30, 0, 40, 10)
    assert evaluate([det("star", box=star_left), det("square", box=square_right)], md)[0]
    ok, why = evaluate([det("star", box=square_right), det("square", box=star_left)], md)
    assert not ok and "right of" in why
    ok, why = evaluate([det("star", box=star_left)], md)
    assert not ok and "no target" in why


def test_at_most_16_detections_per_class():
    kept = keep_detections([det("ring", conf=0.5 + i / 100) for i in range(20)], "two_object")
    assert len(kept["ring"]) == 16 and kept["ring"][0].confidence == 0.69


def test_overall_is_the_mean_of_tag_scores():
    results = [{"tag": "colors", "correct": True}] + [{"tag": "counting", "correct": False}] * 3
    scores = summarize(results)
    assert scores["colors"] == 1.0 and scores["counting"] == 0.0
    assert scores["overall"] == 0.5  # the image mean would be 0.25
