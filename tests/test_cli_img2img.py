"""`lens generate PROMPT --image IN [--mask M] --strength S` as a user runs it."""

import numpy as np
import PIL.Image
import pytest

from lens.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny model folder and input pictures: a 32 x 48 image, masks, one of a wrong size."""
    root = tmp_path_factory.mktemp("img2img")
    assert main(["create-tiny", str(root / "tiny")]) == 0
    rng = np.random.default_rng(0)
    picture = PIL.Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    picture.save(root / "in.png")
    picture.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT).save(root / "flipped.png")
    PIL.Image.fromarray(rng.integers(0, 256, (30, 48, 3), dtype=np.uint8)).save(root / "odd.png")
    PIL.Image.new("L", (48, 32), 0).save(root / "black.png")
    PIL.Image.new("L", (48, 30), 255).save(root / "small-mask.png")
    (root / "notes.txt").write_text("not an image")
    return root


def _run(files, out, *extra) -> PIL.Image.Image:
    args = ["generate", "a red circle", "--model", str(files / "tiny"), "--steps", "2", "--out", str(out)]
    assert main(args + list(extra)) == 0
    (path,) = out.glob("*.png")
    return PIL.Image.open(path)


def test_strength_one_is_the_text_to_image_picture(files, tmp_path):
    image = _run(files, tmp_path / "i2i", "--image", str(files / "in.png"), "--strength", "1", "--seed", "3")
    plain = _run(files, tmp_path / "t2i", "--height", "32", "--width", "48", "--seed", "3")
    assert image.size == (48, 32)  # the image's own size
    assert (image.text["image"], image.text["strength"]) == (str(files / "in.png"), "1.0")
    assert np.array_equal(np.asarray(image), np.asarray(plain))


def test_below_strength_one_the_image_matters_and_height_width_resize(files, tmp_path):
    def draw(name, image, strength):
        out = _run(files, tmp_path / name, "--image", str(files / image), "--strength", strength)
        return np.asarray(out, dtype=np.int16)

    # at strength 1 the image is noise times 1 plus the image times 0: another image, the same picture
    assert np.array_equal(draw("a1", "in.png", "1"), draw("b1", "flipped.png", "1"))
    assert np.abs(draw("a", "in.png", "0.3") - draw("b", "flipped.png", "0.3")).max() > 10
    resized = _run(files, tmp_path / "r", "--image", str(files / "in.png"), "--height", "64", "--width", "64")
    assert resized.size == (64, 64) and resized.text["strength"] == "0.6"  # the img2img default


def test_an_all_black_mask_keeps_the_image_whatever_the_seed(files, tmp_path):
    args = ["--image", str(files / "in.png"), "--mask", str(files / "black.png")]
    a = _run(files, tmp_path / "a", *args, "--seed", "1")
    b = _run(files, tmp_path / "b", *args, "--seed", "2", "--strength", "0.5")
    assert a.text["mask"] == str(files / "black.png") and a.text["strength"] == "1.0"  # inpaint default
    assert np.array_equal(np.asarray(a), np.asarray(b))  # only the image's own latents are decoded


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--image", "{}/missing.png"], "--image {}/missing.png: no such file"),
        (["--image", "{}/notes.txt"], "not an image file Pillow can read"),
        (["--image", "{}"], "is a folder"),
        (
            ["--image", "{}/odd.png"],
            "is 30x48 (HxW): height=30 is not a multiple of 16; use 16 or 32; or pass --height",
        ),
        (["--image", "{}/in.png", "--height", "40", "--width", "48"], "height=40 is not a multiple of 16"),
        (["--image", "{}/in.png", "--height", "32"], "both --height and --width"),
        (["--image", "{}/in.png", "--aspect", "1:1"], "--aspect does not go with --image"),
        (["--image", "{}/in.png", "--mask", "{}/small-mask.png"], "the mask is 30x48 but the image is 32x48"),
        (["--image", "{}/in.png", "--mask", "{}/nope.png"], "--mask {}/nope.png: no such file"),
        (["--image", "{}/in.png", "--strength", "0"], "--strength must be a number in (0, 1]"),
        (["--image", "{}/in.png", "--strength", "1.5"], "got 1.5"),
        (["--mask", "{}/black.png"], "--mask needs --image"),
        (["--strength", "0.5"], "--strength needs --image"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(files, tmp_path, capsys, extra, words):
    extra = [arg.format(files) for arg in extra]
    assert main(["generate", "x", "--model", str(files / "tiny"), "--out", str(tmp_path)] + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lens generate: error:") and words.format(files) in err[0]
    assert not list(tmp_path.glob("*.png"))
