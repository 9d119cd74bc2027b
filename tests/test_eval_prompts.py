"""The Nano-Eval prompt suite: GenEval's tags, metadata format and phrasing."""

import json

import pytest

from lens.errors import LensError
from lens.eval import nano_prompts, read_prompts, write_prompts
from lens.world import SHAPES, TAGS


def test_suite_covers_six_tags_deterministically():
    prompts = nano_prompts()
    assert prompts == nano_prompts() and prompts != nano_prompts(seed=1)
    by_tag = {t: [p for p in prompts if p["tag"] == t] for t in TAGS}
    assert {t: len(v) for t, v in by_tag.items()} == {
        "single_object": 8, "two_object": 28, "counting": 24, "colors": 32, "position": 32, "color_attr": 32,
    }  # fmt: skip
    assert len({p["prompt"] for p in prompts}) == len(prompts)
    assert {p["include"][0]["class"] for p in by_tag["single_object"]} == set(SHAPES)
    assert {p["include"][0]["count"] for p in by_tag["counting"]} == {2, 3, 4}


def test_coloured_counting_adds_counting_prompts_the_suite_does_not_hold(tmp_path, capsys):
    from lens.cli import main

    plain, more = nano_prompts(seed=1), nano_prompts(seed=1, coloured_counting=2)
    extra = [p for p in more if p not in plain]
    assert [p for p in more if p in plain] == plain  # the other prompts are unchanged
    assert len(extra) == len(SHAPES) * 3 * 2 and {p["tag"] for p in extra} == {"counting"}
    assert not {p["prompt"] for p in extra} & {p["prompt"] for p in nano_prompts()}  # held out
    (obj,) = extra[0]["include"]
    assert extra[0]["prompt"] == f"a photo of two {obj['color']} {obj['class']}s" and obj["count"] == 2
    assert len({p["prompt"] for p in extra}) == len(extra)
    with pytest.raises(LensError, match="coloured_counting"):
        nano_prompts(coloured_counting=11)
    suite, out = tmp_path / "suite.jsonl", tmp_path / "rl.jsonl"
    assert main(["eval", "nano-prompts", "--out", str(suite)]) == 0
    args = ["--seed", "1", "--per-tag", "96", "--exclude", str(suite), "--coloured-counting", "2"]
    assert main(["eval", "nano-prompts", "--out", str(out), *args]) == 0
    counting = [p for p in read_prompts(str(out)) if p["tag"] == "counting"]
    assert len(counting) == 48 and all("color" in p["include"][0] for p in counting)


def test_metadata_follows_geneval_format_and_phrasing():
    prompts = {p["prompt"]: p for p in nano_prompts()}
    assert prompts["a photo of a circle"] == {
        "tag": "single_object",
        "include": [{"class": "circle", "count": 1}],
        "prompt": "a photo of a circle",
    }
    assert prompts["a photo of three stars"] == {
        "tag": "counting",
        "include": [{"class": "star", "count": 3}],
        "exclude": [{"class": "star", "count": 4}],
        "prompt": "a photo of three stars",
    }
    for p in nano_prompts():
        assert list(p)[0] == "tag" and list(p)[-1] == "prompt" and p["prompt"].startswith("a photo of ")
        if p["tag"] == "position":  # GenEval lists the target first, the mover second
            target, mover = p["include"]
            assert mover["position"][1] == 0 and "position" not in target
            assert p["prompt"] == f"a photo of {_np(mover)} {mover['position'][0]} {_np(target)}"
        if p["tag"] in ("colors", "color_attr"):
            assert all("color" in r for r in p["include"])
            assert all(f"{r['color']} {r['class']}" in p["prompt"] for r in p["include"])


def _np(req):
    return ("an " if req["class"][0] in "aeiou" else "a ") + req["class"]


def test_write_read_round_trip_and_errors(tmp_path):
    path = tmp_path / "p.jsonl"
    write_prompts(str(path), nano_prompts())
    assert read_prompts(str(path)) == nano_prompts()
    assert len(path.read_text().splitlines()) == 156
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"tag": "vibes", "include": []}) + "\n")
    with pytest.raises(LensError, match="GenEval metadata"):
        read_prompts(str(bad))
    with pytest.raises(LensError, match="nano-prompts"):
        read_prompts(str(tmp_path / "missing.jsonl"))


def test_prompts_held_out_from_a_suite(tmp_path, capsys):
    """RL prompts that share no prompt with the suite a model is scored on (`--exclude`)."""
    from lens.cli import main

    suite, rl = tmp_path / "suite.jsonl", tmp_path / "rl.jsonl"
    assert main(["eval", "nano-prompts", "--out", str(suite)]) == 0
    assert main(["eval", "nano-prompts", "--out", str(rl), "--seed", "1", "--exclude", str(suite)]) == 0
    held_out = {md["prompt"] for md in read_prompts(str(suite))}
    kept = read_prompts(str(rl))
    assert kept and not held_out & {md["prompt"] for md in kept}
    assert {md["tag"] for md in kept} >= {"colors", "position", "color_attr"}
    capsys.readouterr()
    assert main(["eval", "nano-prompts", "--out", str(rl), "--exclude", str(suite)]) == 2
    assert "every prompt is in" in capsys.readouterr().err
