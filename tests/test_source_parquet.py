"""Parquet sources (a Hugging Face dataset's files): records, skipped rows, and `lens train` / `lens
prepare` reading them through `data.shards`."""

import io
import re

import pytest
from PIL import Image

from lens.cli import main
from lens.errors import LensError
from lens.source.base import BadSample
from lens.source.spec import open_source
from lens.source.tar import TarSource
from lens.train.presets import load_config

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

COLOURS = ((255, 0, 0), (0, 200, 0), (0, 0, 255), (250, 200, 0), (120, 0, 160), (0, 180, 180), (90, 90, 90))
SIZES = ((64, 64), (48, 80), (80, 48))
BROKEN = 2  # the row whose image bytes are cut short


def _png(i: int) -> bytes:
    h, w = SIZES[i % len(SIZES)]
    buf = io.BytesIO()
    Image.new("RGB", (w, h), COLOURS[i % len(COLOURS)]).save(buf, "PNG")
    return buf.getvalue()


def write_table(path, n=14, caption="caption", row_group_size=5):
    """`datasets`' layout: an image column of {bytes, path} structs and a text column."""
    images = [{"bytes": _png(i)[: 40 if i == BROKEN else None], "path": f"{i}.png"} for i in range(n)]
    table = pa.table({"image": images, caption: [f"a flat colour, number {i}" for i in range(n)]})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def test_records_per_row_group_and_a_corrupt_row_is_a_bad_sample(tmp_path):
    cfg = load_config("debug").data
    source = open_source(str(write_table(tmp_path / "train-00000-of-00001.parquet")), cfg)
    assert source.parts == [f"{tmp_path}/train-00000-of-00001.parquet#{g}" for g in range(3)]
    records = [r for part in range(len(source.parts)) for r in source.records(part)]
    assert [r.key for r in records] == [f"train-00000-of-00001-{i:08d}" for i in range(14)]
    assert (
        records[5].dense == "a flat colour, number 5"
        and records[5].kind == "images"
        and source.kind() == "images"
    )
    image, size = records[4].decode_image()
    assert size == SIZES[4 % 3] and image.getpixel((0, 0)) == COLOURS[4]
    with pytest.raises(BadSample, match=records[BROKEN].key):
        records[BROKEN].decode_image()


def test_column_names_come_from_the_config_and_a_missing_one_says_so(tmp_path):
    path = str(write_table(tmp_path / "t.parquet", n=3, caption="text"))
    with pytest.raises(LensError, match="has no column 'caption'.*data.caption_column"):
        open_source(path, load_config("debug").data)
    source = open_source(path, load_config("debug", ["data.caption_column=text"]).data)
    assert next(source.records(0)).dense == "a flat colour, number 0"


def test_a_folder_of_parquet_files_and_a_damaged_one(tmp_path):
    write_table(tmp_path / "a.parquet", n=4)
    (tmp_path / "b.parquet").write_bytes(b"PAR1 not really parquet")
    source = open_source(str(tmp_path), load_config("debug").data)
    assert source.parts[-1] == str(tmp_path / "b.parquet")
    damage: list[str] = []
    assert list(source.records(len(source.parts) - 1, damage)) == [] and "b.parquet" in damage[0]
    with pytest.raises(LensError, match="mixes .parquet files with shards"):
        open_source(f"{tmp_path}/a.parquet,{tmp_path}/x.tar", load_config("debug").data)


def test_train_and_prepare_read_parquet(tmp_path, capsys):
    path = str(write_table(tmp_path / "data.parquet"))
    fast = ["train.steps=3", "log.eval_every=0", "log.sample_every=0", "log.tensorboard=false"]
    fast += [f"data.shards={path}", "data.shuffle_buffer=4", "data.caption_dropout=0"]
    assert (
        main(["train", "debug", "--run-dir", str(tmp_path / "run")] + [a for f in fast for a in ("--set", f)])
        == 0
    )
    done = capsys.readouterr().out
    assert "done: step 3" in done and int(re.search(r"'bad_samples': (\d+)", done)[1]) >= 1  # the corrupt row
    assert "3 shards (images)" in (tmp_path / "run" / "train.log").read_text()

    out = tmp_path / "features"
    assert main(["prepare", path, str(out), "--config", "debug", "--samples-per-shard", "8"]) == 0
    printed = capsys.readouterr().out
    assert "prepared 13 samples into 2 shards" in printed and "(skipped 1 samples, 0 shards)" in printed
    features = open_source(str(out), load_config("debug").data)
    assert features.kind() == "features" and sum(1 for p in range(2) for _ in features.records(p)) == 13


def test_a_source_without_parts_says_so_in_one_line():
    with pytest.raises(LensError, match="none of the 0 parts of nothing holds a readable image"):
        TarSource([], "nothing").kind()
