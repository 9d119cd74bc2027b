import io

import numpy as np
import pytest
from PIL import Image

from lens.data.decode import CorruptImage, decode, encode
from tests.test_data_helpers import bomb_png, broken_files, jpeg, png


def test_exif_orientation_is_applied():
    # 60 wide x 40 high, red on the left half; EXIF 6 = "rotate 90 CW to display"
    im = Image.new("RGB", (60, 40), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 30, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    out, info = decode(jpeg(im, exif=exif.tobytes()))
    assert out.size == (40, 60) and info["orientation"] == 6
    top = np.asarray(out)[5, 20]
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top


def test_palette_with_transparency_is_composited_on_white():
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.putpixel((0, 0), 1)
    im.info["transparency"] = 0
    out, info = decode(png(im, transparency=0))
    a = np.asarray(out)
    assert info["alpha"] and out.mode == "RGB"
    assert tuple(a[4, 4]) == (255, 255, 255) and tuple(a[0, 0]) == (255, 0, 0)


def test_rgba_and_la_alpha_become_white():
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    la = Image.new("LA", (4, 4), (0, 0))
    for im in (rgba, la):
        out, _ = decode(png(im))
        assert tuple(np.asarray(out)[1, 1]) == (255, 255, 255)


def test_cmyk_jpeg_becomes_rgb():
    im = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    out, info = decode(jpeg(im))
    r, g, b = np.asarray(out)[8, 8].astype(int)
    assert info["mode"] == "CMYK" and out.mode == "RGB"
    assert r > 200 and g < 60 and b < 60


def test_16_bit_grey_is_scaled_not_clipped():
    a = np.array([[0, 32768, 65535, 65535]], dtype=np.uint16)
    out, info = decode(png(Image.fromarray(a)))
    v = np.asarray(out)[0, :, 0]
    assert info["mode"].startswith("I")
    assert list(v) == [0, 128, 255, 255]  # PIL's convert('L') would give 0, 255, 255, 255


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated.jpg", "truncated"),
        ("notes.pdf", "not_image"),
        ("empty.png", "not_image"),
        ("bomb.png", "too_large"),
    ],
)
def test_broken_files_raise_counted_reasons(name, reason):
    with pytest.raises(CorruptImage) as err:
        decode(broken_files()[name])
    assert err.value.reason == reason


def test_pixel_limit_is_checked_before_decoding():
    with pytest.raises(CorruptImage, match="120,000,000 pixels > limit 100,000,000"):
        decode(bomb_png(12_000, 10_000))  # above our limit, below Pillow's own guard
    ok, _ = decode(png(Image.new("RGB", (100, 100))), max_pixels=10_000)
    assert ok.size == (100, 100)
    with pytest.raises(CorruptImage):
        decode(png(Image.new("RGB", (101, 100))), max_pixels=10_000)


def test_jpeg_draft_decodes_smaller_but_reports_full_size():
    im = Image.new("RGB", (2400, 1800), (90, 120, 30))
    out, info = decode(jpeg(im), draft_area=500 * 400)
    assert (info["width"], info["height"]) == (2400, 1800)
    assert out.size == (600, 450)  # 1/4 scale: the smallest with area >= 500 * 400


def test_encode_strips_metadata():
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    im, _ = decode(jpeg(Image.new("RGB", (8, 8)), exif=exif.tobytes()))
    data = encode(im, "jpg")
    assert b"SecretCam" not in data
    assert Image.open(io.BytesIO(data)).size == (8, 8)
