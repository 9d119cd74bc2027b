import pytest

from lens.data.caption.prompts import BRIEF, DENSE, WORD_LIMITS, get_prompt
from lens.data.caption.validate import check, clean
from lens.errors import LensError

LONG = "A red kite flies over a green field while two children watch it from a wooden bench. " * 3


@pytest.mark.parametrize(
    "phrase",
    [
        "English",  # one English caption
        "one detailed English paragraph",  # a single paragraph
        "attributes",  # salient objects with attributes
        "counts",  # counts
        "spatial relations",  # relations
        "interactions",  # interactions
        "background",  # background
        "verbatim, in its original language",  # visible text verbatim in its own language
        "landmarks",  # world knowledge: landmarks,
        "fictional characters",  # characters,
        "dishes",  # dishes
        "never more than 500 words",  # under 500 words
        "redraw it faithfully",  # enough to reconstruct the image
    ],
)
def test_dense_prompt_covers_every_reference_requirement(phrase):
    assert phrase in DENSE


def test_brief_prompt_is_for_ablations_and_prompts_are_checked():
    assert "a photo of a cat" in BRIEF and get_prompt("brief") is BRIEF
    assert WORD_LIMITS["dense"] == (30, 500)
    with pytest.raises(LensError, match="dense, brief"):
        get_prompt("poem")


@pytest.mark.parametrize(
    ("text", "finish", "reason"),
    [
        ("", "stop", "empty"),
        ("   \n ", "stop", "empty"),
        ("I'm sorry, but I can't help with that.", "stop", "refusal"),
        ("I cannot describe images of people.", "stop", "refusal"),
        (LONG.strip(), "length", "truncated"),
        (LONG.strip()[:-1] + " and a", "stop", "truncated"),
        ("A cat on a mat.", "stop", "too_short"),
        ("Word " * 520 + "end.", "stop", "too_long"),
        (LONG.strip(), "stop", None),
        ("Caption: " + LONG.strip(), "stop", None),
    ],
)
def test_check_answers(text, finish, reason):
    assert check(text, finish, min_words=30, max_words=500, sentence=True) == reason


def test_clean_makes_one_paragraph():
    assert clean("**Caption:** A dog.\n\nIt runs  fast.") == "A dog. It runs fast."
    # a caption may mention an apology in the scene; only a refusal at the start counts
    text = 'A handwritten sign reads "Sorry, we\'re closed" on a shop door. ' * 4
    assert check(text, "stop", min_words=30, max_words=500, sentence=True) is None
