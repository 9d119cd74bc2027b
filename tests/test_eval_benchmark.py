"""Nano-Eval end to end: the world's own images score ~1, noise and blank images ~0, and wrong
prompts fail (the benchmark is not a yes-machine)."""

import copy
import json

import numpy as np
import pytest
from PIL import Image

from lens.cli import main
from lens.eval import (
    detect,
    evaluate,
    iter_prompt_dirs,
    nano_prompts,
    render_reference,
    sample_path,
    score_folder,
    summarize,
    write_prompt_dir,
)
from lens.world import COLORS, SHAPES


@pytest.fixture(scope="module")
def reference_64(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref64")
    assert render_reference(str(out), height=64, width=64, n_samples=4) == 156 * 4
    return out


def test_reference_images_score_at_least_0_97_square(reference_64, tmp_path, capsys):
    capsys.readouterr()
    assert (
        main(["eval", "nano-score", str(reference_64), "--json", "--results", str(tmp_path / "r.jsonl")]) == 0
    )
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {
        "single_object",
        "two_object",
        "counting",
        "colors",
        "position",
        "color_attr",
        "overall",
    }
    assert scores["overall"] >= 0.97 and min(scores.values()) >= 0.9, scores
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(lines) == 624 and {"filename", "tag", "prompt", "correct", "reason", "metadata"} <= set(
        lines[0]
    )


def test_reference_images_score_at_least_0_97_non_square(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    assert main(["eval", "nano-prompts", "--out", str(prompts)]) == 0
    out = tmp_path / "ref96x64"
    assert (
        main(["eval", "render-reference", "--out", str(out), "--prompts", str(prompts), "--size", "96x64"])
        == 0
    )
    with Image.open(sample_path(str(out), 0, 3)) as im:
        assert im.size == (64, 96)
    results, scores = score_folder(str(out))
    assert len(results) == 624
    assert scores["overall"] >= 0.97 and min(scores.values()) >= 0.9, scores
    capsys.readouterr()
    assert main(["eval", "nano-score", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err


def _folder_of(tmp_path, make_images):
    for i, md in enumerate(nano_prompts()):
        write_prompt_dir(str(tmp_path), i, md)
        for k, img in enumerate(make_images(i)):
            Image.fromarray(img).save(sample_path(str(tmp_path), i, k))
    return score_folder(str(tmp_path))[1]


def test_noise_images_score_at_most_0_05(tmp_path):
    rng = np.random.default_rng(0)

    def noise(i):  # uniform and Gaussian noise, alternating across prompts
        if i % 2:
            return [np.clip(128 + rng.normal(0, 50, (64, 96, 3)), 0, 255).astype(np.uint8)]
        return [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]

    assert _folder_of(tmp_path, noise)["overall"] <= 0.05


def test_blank_images_score_at_most_0_05(tmp_path):
    def blank(_):
        return [np.full((64, 64, 3), v, np.uint8) for v in (0, 128, 255)]

    assert _folder_of(tmp_path, blank)["overall"] <= 0.05


def _perturb(md):
    """A prompt the image must not satisfy: another shape, colour, count or the opposite relation."""
    md = copy.deepcopy(md)
    inc = md["include"]
    if md["tag"] == "counting":
        inc[0]["count"] += 1
        md["exclude"][0]["count"] += 1
    elif md["tag"] == "position":
        rel = inc[1]["position"][0]
        inc[1]["position"][0] = {
            "left of": "right of",
            "right of": "left of",
            "above": "below",
            "below": "above",
        }[rel]
    elif "color" in inc[-1]:
        names = list(COLORS)
        inc[-1]["color"] = names[(names.index(inc[-1]["color"]) + 1) % len(names)]
    else:
        used = {r["class"] for r in inc}
        inc[-1]["class"] = next(s for s in SHAPES if s not in used)
    return md


def test_wrong_prompts_fail_on_reference_images(reference_64):
    results = []
    for _, md, paths in iter_prompt_dirs(str(reference_64)):
        wrong = _perturb(md)
        for path in paths[:2]:
            with Image.open(path) as im:
                results.append({"tag": md["tag"], "correct": evaluate(detect(im.convert("RGB")), wrong)[0]})
    assert summarize(results)["overall"] <= 0.05
