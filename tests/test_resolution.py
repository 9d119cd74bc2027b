"""Released presets, training buckets and size validation."""

import pytest

from lens.errors import LensError
from lens.resolution import RATIOS, lens_buckets, nearest_bucket, preset, validate_size


def test_presets_at_1024_match_the_release():
    assert preset("1:1") == (1024, 1024)
    assert preset("1:2") == (1472, 736)  # W:H, so 1:2 is tall
    assert preset("16:9") == (768, 1376)
    assert all(h % 16 == 0 and w % 16 == 0 for h, w in map(preset, RATIOS))


def test_presets_at_1440_scale_and_round_to_16():
    assert preset("1:1", 1440) == (1440, 1440)
    for ratio in RATIOS:
        h, w = preset(ratio, 1440)
        h0, w0 = preset(ratio)
        assert h % 16 == 0 and w % 16 == 0
        assert abs(h - h0 * 1440 / 1024) <= 8 and abs(w - w0 * 1440 / 1024) <= 8


def test_the_paper_has_27_buckets_with_per_area_batches():
    buckets = lens_buckets()
    assert len(buckets) == 27 and len({(b.height, b.width) for b in buckets}) == 27
    assert {b.batch_size for b in buckets if b.height * b.width <= 512 * 512 * 1.05} == {24}
    assert {(b.height, b.width) for b in buckets if b.batch_size == 6} == {preset(r) for r in RATIOS}
    assert {(b.width, b.height) for b in buckets} == {(b.height, b.width) for b in buckets}  # symmetric


def test_nearest_bucket_prefers_aspect_then_area():
    buckets = lens_buckets()
    assert (nearest_bucket(3000, 1500, buckets).height, nearest_bucket(3000, 1500, buckets).width) == (
        1472,
        736,
    )
    small = nearest_bucket(500, 500, buckets)
    assert (small.height, small.width) == (512, 512)


@pytest.mark.parametrize(
    "h, w, words",
    [(100, 64, "multiple of 16"), (0, 64, "positive"), (64.0, 64, "integer"), (4096, 4096, "limit")],
)
def test_bad_sizes(h, w, words):
    with pytest.raises(LensError, match=words):
        validate_size(h, w)


def test_unknown_presets():
    with pytest.raises(LensError, match="aspect ratio"):
        preset("5:4")
    with pytest.raises(LensError, match="1024 or 1440"):
        preset("1:1", 2048)
