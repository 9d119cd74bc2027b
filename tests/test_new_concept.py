"""The new-concept demo's data and reader (`lens.research.new_concept`, `lens nano concept-*`)."""

import numpy as np
from PIL import Image

from lens.cli import main
from lens.research.new_concept import NAME, concept_scene, crescent_coverage, read_main_object
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
        image, caption = concept_scene(seed)
        assert image.size == (128, 128) and NAME in caption and "circle" not in caption
        read.append(read_main_object(image))
    crescents = [r for r in read if r and r[0] == NAME]
    assert len(crescents) >= 9, read  # a second, larger shape may be the main object
    circles = [
        read_main_object(render_scene(build_scene([{"shape": "circle"}], s), 128, 128)) for s in range(6)
    ]
    assert all(r[0] == "circle" for r in circles), circles  # the ninth class takes nothing from the world's
    assert read_main_object(Image.new("RGB", (64, 64), (200, 200, 200))) is None


def test_concept_cli_writes_a_finetune_folder_and_scores_a_model(tmp_path, capsys):
    out = tmp_path / "crescents"
    assert main(["nano", "concept-data", str(out), "--n", "3", "--size", "64"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"000{i}.{e}" for i in range(3) for e in ("png", "txt")]
    assert Image.open(out / "0000.png").size == (64, 64) and NAME in (out / "0000.txt").read_text()

    model = tmp_path / "model"
    tiny_random_pipeline(height=32, width=32).save_pretrained(str(model))
    grid = tmp_path / "grid.png"
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
    assert main(args) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("crescent ") and line.endswith("| 16 images")
    assert Image.open(grid).size == (8 * 32, 2 * 32)
    assert main(["nano", "concept-data", str(out), "--n", "0"]) != 0
    assert "--n must be at least 1" in capsys.readouterr().err
