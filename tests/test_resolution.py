"""Released presets, training buckets and size validation."""

import pytest

from lens.errors import LensError
from lens.resolution import RATIOS, lens_buckets, nearest_bucket, parse_size, preset, validate_size


def test_presets_at_1024_match_the_release():
    assert preset("1:1") == (1024, 1024)
    assert preset("1:2") == (1472, 736)  # W:H, so 1:2 is tall
    assert preset("16:9") == (768, 1376)
    assert all(h % 16 == 0 and w % 16 == 0 for h, w in map(preset, RATIOS))


def test_presets_at_1440_are_the_released_table():
    released = {
        "1:2": (2080, 1040),  # not 2064 x 1040, which rounding 1472 * 1440 / 1024 would give
        "9:16": (1936, 1088),
        "2:3": (1760, 1168),
        "3:4": (1616, 1216),
        "1:1": (1440, 1440),
        "4:3": (1216, 1616),
        "3:2": (1168, 1760),
        "16:9": (1088, 1936),
        "2:1": (1040, 2080),
    }
    assert {ratio: preset(ratio, 1440) for ratio in RATIOS} == released


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


def test_parse_size_is_the_one_hxw_parser():
    assert parse_size("64x96") == (64, 96) and parse_size("512X512") == (512, 512)
    with pytest.raises(LensError, match=r"log.sample_size '512' is not HEIGHTxWIDTH"):
        parse_size("512", "log.sample_size")
    with pytest.raises(LensError, match="multiple of 16"):
        parse_size("60x64")
    import lens.train.previews
    import lens.world
    import lens.world.render

    # nobody keeps a copy or a second name for it
    assert not any(hasattr(m, "parse_size") for m in (lens.world, lens.world.render, lens.train.previews))
