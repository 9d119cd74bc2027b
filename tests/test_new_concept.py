"""The new-concept demo's data and reader (`lens.research.new_concept`, `lens nano concept-*`)."""

import numpy as np
from PIL import Image

from lens.cli import main
from lens.research.new_concept import (
    NAME,
    concept_prompts,
    concept_sample,
    crescent_coverage,
    read_main_object,
)
from lens.source.tar import TarSource
from lens.testing import tiny_random_pipeline
from lens.world.render import render_scene
from lens.world.sampler import build_scene


def test_a_crescent_is_a_disk_with_a_bite():
    cov = crescent_coverage(32, 32, 20, 64, 64)
    disk = np.hypot(*(np.mgrid[0:64, 0:64] + 0.5 - 32)) <= 20  # pixel centres
    assert 0.25 < cov.sum() / disk.sum() < 0.6  # the cut takes most of the disk
    assert cov[32, 14] > 0.99 and cov[28, 40] < 0.01  # the back of the crescent is solid, its mouth empty
    assert (
        cov[~disk].max() < 0.8 and cov[np.hypot(*(np.mgrid[0:64, 0:64] + 0.5 - 32)) > 21].max() == 0
    )  # inside the disk


def test_scenes_are_captioned_with_the_new_word_and_read_back_as_crescents():
    read = []
    for seed in range(12):
        sample = concept_sample(seed)
        caption = str(sample.caption)
        assert sample.image.size == (128, 128) and NAME in caption and "circle" not in caption
        phrases = [caption[a:b] for a, b, _, _ in sample.caption.spans]  # moved with the renamed text
        assert all(p == p.strip() and p for p in phrases), phrases
        crescent = sample.scene.objects[0]  # the crescent's phrase sits at the crescent
        places = {(x, y) for a, b, x, y in sample.caption.spans if NAME in caption[a:b]}
        assert places == {(crescent.x, crescent.y)}, (caption, sample.caption.spans)
        read.append(read_main_object(sample.image))
    crescents = [r for r in read if r and r[0] == NAME]
    assert len(crescents) >= 9, read  # a second, larger shape may be the main object
    circles = [
        read_main_object(render_scene(build_scene([{"shape": "circle"}], s), 128, 128)) for s in range(6)
    ]
    assert all(r[0] == "circle" for r in circles), circles  # the ninth class takes nothing from the world's
    assert read_main_object(Image.new("RGB", (64, 64), (200, 200, 200))) is None


def test_concept_cli_writes_a_grounded_shard_and_scores_a_model(tmp_path, capsys):
    out = tmp_path / "crescents"
    assert main(["nano", "concept-data", str(out), "--n", "3", "--size", "64"]) == 0
    (shard,) = out.glob("*.tar")
    records = list(TarSource([str(shard)]).records(0))
    assert len(records) == 3
    for r in records:
        assert NAME in r.dense and "circle" not in r.dense and r.stored_size() == (64, 64)
        assert r.grounding["dense"] and r.grounding["brief"]  # both captions keep their spans
    named = [r.dense[a:b] for r in records for a, b, _, _ in r.grounding["dense"]]
    assert any(NAME in phrase for phrase in named)  # the crescent's phrase is grounded where it is
    assert main(["nano", "concept-data", str(out), "--n", "3"]) != 0
    assert "is not empty" in capsys.readouterr().err

    model = tmp_path / "model"
    tiny_random_pipeline(height=32, width=32).save_pretrained(str(model))
    grid = tmp_path / "grid.png"
    for extra in ([], ["--plain"]):
        args = [
            "nano",
            "concept-eval",
            "--model",
            str(model),
            "--seeds",
            "2",
            "--steps",
            "2",
            "--grid",
            str(grid),
        ]
        assert main(args + extra) == 0
        line = capsys.readouterr().out.strip().splitlines()[-1]
        assert line.startswith("crescent ") and line.endswith("| 16 images")
        assert Image.open(grid).size == (8 * 32, 2 * 32)
    assert main(["nano", "concept-data", str(tmp_path / "x"), "--n", "0"]) != 0
    assert "--n must be at least 1" in capsys.readouterr().err


def test_eval_captions_are_held_out_and_grounded_at_the_crescent():
    prompts = concept_prompts(seeds=2)
    assert len(prompts) == 16 and len({p for _, p in prompts}) == 16
    for colour, prompt in prompts:
        assert f"{colour} {NAME}" in prompt
        assert any(NAME in prompt[a:b] for a, b, _, _ in prompt.spans)  # its phrase is grounded
    assert concept_prompts(1, grounded=False)[1] == ("orange", "a photo of an orange crescent")
