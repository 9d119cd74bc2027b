"""`lens generate` and `lens create-tiny` as a user runs them."""

import numpy as np
import PIL.Image
import pytest

from lens.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    assert main(["create-tiny", str(path)]) == 0
    return path


def test_generate_writes_deterministic_pngs(model_dir, tmp_path, capsys):
    args = ["generate", "a red circle", "--model", str(model_dir), "--steps", "2", "--n", "2", "--seed", "7"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b"), "--height", "32", "--width", "48"]) == 0
    assert main(args + ["--out", str(tmp_path / "c")]) == 0
    a = sorted((tmp_path / "a").glob("*.png"))
    assert len(a) == 2 and PIL.Image.open(a[0]).size == (64, 64)
    assert PIL.Image.open(a[0]).text["prompt"] == "a red circle"
    assert PIL.Image.open(sorted((tmp_path / "b").glob("*.png"))[0]).size == (48, 32)
    c = sorted((tmp_path / "c").glob("*.png"))
    assert np.array_equal(np.asarray(PIL.Image.open(a[0])), np.asarray(PIL.Image.open(c[0])))


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--height", "100", "--width", "64"], "multiple of 16"),
        (["--steps", "0"], "positive integer"),
        (["--aspect", "7:5"], "aspect ratio"),
        (["--width", "64"], "--width needs --height"),
        (["--n", "0"], "--n"),
        (["--cfg", "inf"], "--cfg must be a finite number"),
        (["--cfg", "nan"], "--cfg must be a finite number"),
        (["--cfg=-inf"], "--cfg must be a finite number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(model_dir, tmp_path, capsys, extra, words):
    assert main(["generate", "x", "--model", str(model_dir), "--out", str(tmp_path)] + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("lens generate: error:") and words in err


def test_out_that_is_a_file_is_one_line(model_dir, tmp_path, capsys):
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"an earlier image")
    for out in (taken, taken / "sub"):  # the file itself, or a folder under it
        assert main(["generate", "x", "--model", str(model_dir), "--steps", "1", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("lens generate: error: --out") and "folder" in err[0]
    assert taken.read_bytes() == b"an earlier image"


def test_missing_model_paths_are_explained(tmp_path, capsys):
    assert main(["generate", "x", "--model", str(tmp_path)]) == 2
    assert "model_index.json" in capsys.readouterr().err
    assert main(["generate", "x", "--model", "not a model"]) == 2
    assert "hub id" in capsys.readouterr().err


def test_nano_reasoner_rewrites_geneval_prompts(model_dir, tmp_path, capsys):
    from lens.world.reasoner import rewrite_prompt

    prompt = "two red circles above a blue square"
    args = ["generate", prompt, "--model", str(model_dir), "--steps", "1", "--out", str(tmp_path)]
    assert main(args + ["--reasoner", "nano", "--seed", "3"]) == 0
    image = PIL.Image.open(next(tmp_path.glob("*.png")))
    assert image.text["prompt"] == prompt and image.text["caption"] == rewrite_prompt(prompt, 3)
    assert "caption (nano reasoner)" in capsys.readouterr().out
    # auto: only the bundled model gets the reasoner; a folder gets the prompt as it is
    assert main(args + ["--out", str(tmp_path / "plain")]) == 0
    assert "caption" not in PIL.Image.open(next((tmp_path / "plain").glob("*.png"))).text


def test_nano_reasoner_lays_out_for_the_models_world(model_dir, tmp_path):
    import json
    import shutil

    from lens.world.reasoner import rewrite_prompt

    scaled = tmp_path / "scaled"
    shutil.copytree(model_dir, scaled)
    index = json.loads((scaled / "model_index.json").read_text())
    (scaled / "model_index.json").write_text(json.dumps({**index, "world_object_scale": 1.8}))
    prompt = "a photo of four hearts"
    args = ["generate", prompt, "--model", str(scaled), "--steps", "1", "--reasoner", "nano", "--seed", "3"]
    assert main(args + ["--out", str(tmp_path / "out")]) == 0
    caption = PIL.Image.open(next((tmp_path / "out").glob("*.png"))).text["caption"]
    assert caption == rewrite_prompt(prompt, 3, object_scale=1.8) != rewrite_prompt(prompt, 3)


def test_nano_reasoner_explains_prompts_it_cannot_read(model_dir, tmp_path, capsys):
    args = ["generate", "a corgi in a cafe", "--model", str(model_dir), "--reasoner", "nano"]
    assert main(args + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--reasoner none" in err and "a photo of two red circles" in err
