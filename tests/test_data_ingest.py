import csv
import io
import json
import os
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lens.data.ingest import ingest_config, run_ingest
from lens.data.sample import read_meta
from lens.data.shards import iter_shard, list_shards
from lens.data.units import parse_shard
from lens.errors import LensError
from tests.test_data_helpers import BIG_PHOTOS, SMALL_PHOTOS, jpeg, make_folder, photo


def _samples(folder):
    return [s for shard in list_shards(folder) for s in iter_shard(shard)]


def _counts(folder):
    total = {}
    for f in folder.glob("*.stats.json"):
        for k, v in json.loads(f.read_text())["counts"].items():
            total[k] = total.get(k, 0) + v
    return total


def test_folder_ingest_writes_normalised_shards_and_counts_broken_files(tmp_path):
    src = make_folder(tmp_path / "imgs")
    out = tmp_path / "raw"
    run_ingest([str(src)], ingest_config(str(out)), per_shard=4)
    samples = _samples(out)
    n = len(BIG_PHOTOS + SMALL_PHOTOS)
    assert len(samples) == n
    assert _counts(out) == {"seen": n + 4, "written": n, "truncated": 1, "not_image": 2, "too_large": 1}
    assert len(list_shards(out)) == 3  # 12 inputs, 4 per shard
    by_source = {read_meta(s)["source"].rsplit("/", 1)[1]: s for s in samples}
    astro = by_source["astronaut.jpg"]
    meta = read_meta(astro)
    assert meta["alt"] == "an astronaut in a white suit"  # from the .txt sidecar
    assert (meta["width"], meta["height"], meta["bucket"]) == (512, 512, "512x512")
    coffee = read_meta(by_source["coffee.jpg"])  # 600x400: exactly 3:2, like the 640x960 bucket
    assert coffee["bucket"] == "640x960"
    im = Image.open(io.BytesIO(astro["jpg"]))
    assert im.size == (512, 512) and im.mode == "RGB"
    assert all("." not in s["__key__"] for s in samples)
    errors = [e for f in out.glob("*.stats.json") for e in json.loads(f.read_text())["errors"]]
    assert any("truncated.jpg" in e for e in errors)


def test_tar_input_like_img2dataset(tmp_path):
    shard = tmp_path / "00000.tar"
    with tarfile.open(shard, "w") as tar:
        for i, name in enumerate(("astronaut", "rocket")):
            for ext, data in (
                ("jpg", jpeg(photo(name))),
                ("txt", f"alt {name}".encode()),
                ("json", json.dumps({"url": f"https://example.com/{name}.jpg", "key": f"{i:09d}"}).encode()),
            ):
                info = tarfile.TarInfo(f"{i:09d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("000000009.json")  # a failed download leaves metadata without an image
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    out = tmp_path / "raw"
    run_ingest([str(shard)], ingest_config(str(out), fmt="png"))
    samples = _samples(out)
    metas = [read_meta(s) for s in samples]
    assert [m["alt"] for m in metas] == ["alt astronaut", "alt rocket"]
    assert metas[1]["url"] == "https://example.com/rocket.jpg"
    assert all("png" in s for s in samples)
    assert _counts(out)["no_image"] == 1


def test_truncated_tar_is_read_as_far_as_possible(tmp_path):
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w") as tar:
        for i, name in enumerate(("astronaut", "camera", "coffee")):
            data = jpeg(photo(name))
            info = tarfile.TarInfo(f"k{i}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = shard.read_bytes()
    shard.write_bytes(raw[: int(len(raw) * 0.8)])
    out = tmp_path / "raw"
    run_ingest([str(shard)], ingest_config(str(out)))
    counts = _counts(out)
    assert counts["damaged_shards"] == 1 and counts["written"] == 2


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_path_lists_with_alt_text(tmp_path, kind):
    make_folder(tmp_path / "imgs", photos=("astronaut", "rocket"), broken=False)
    rows = [
        {"path": "imgs/astronaut.jpg", "caption": "a spaceman"},
        {"path": "imgs/rocket.jpg", "caption": ""},
    ]
    rows.append({"path": "imgs/missing.jpg", "caption": "gone"})
    lst = tmp_path / f"list.{kind}"
    if kind == "csv":
        with lst.open("w", newline="") as f:
            w = csv.DictWriter(f, ["path", "caption"])
            w.writeheader()
            w.writerows(rows)
    elif kind == "jsonl":
        lst.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), lst)
    out = tmp_path / "raw"
    run_ingest([str(lst)], ingest_config(str(out)))
    metas = [read_meta(s) for s in _samples(out)]
    assert [m["alt"] for m in metas] == ["a spaceman", None]
    assert _counts(out)["missing"] == 1


def test_url_list_points_to_img2dataset(tmp_path):
    lst = tmp_path / "urls.csv"
    lst.write_text("url,caption\nhttps://example.com/a.jpg,a cat\n")
    with pytest.raises(LensError, match="img2dataset"):
        run_ingest([str(lst)], ingest_config(str(tmp_path / "o")))
    lst.write_text("path\nhttps://example.com/a.jpg\n")
    with pytest.raises(LensError, match="img2dataset"):
        run_ingest([str(lst)], ingest_config(str(tmp_path / "o")))


def test_shard_slices_are_deterministic_and_idempotent(tmp_path):
    src = make_folder(tmp_path / "imgs", photos=BIG_PHOTOS[:4], broken=False)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run_ingest([str(src)], ingest_config(str(whole)), per_shard=1)
    for i in range(3):  # three "machines"
        run_ingest([str(src)], ingest_config(str(parts)), per_shard=1, shard=parse_shard(f"{i}/3"))
    a = {p.name: p.read_bytes() for p in list_shards(whole)}
    b = {p.name: p.read_bytes() for p in list_shards(parts)}
    assert len(a) == 4 and a == b  # byte-identical, whoever ran which slice
    # a rerun skips finished shards; --overwrite redoes them with identical bytes
    first = (whole / "000000.tar").stat().st_mtime_ns
    assert run_ingest([str(src)], ingest_config(str(whole)), per_shard=1) == []
    assert (whole / "000000.tar").stat().st_mtime_ns == first
    run_ingest([str(src)], ingest_config(str(whole)), per_shard=1, overwrite=True)
    assert {p.name: p.read_bytes() for p in list_shards(whole)} == a


def test_local_processes_give_the_same_shards(tmp_path):
    src = make_folder(tmp_path / "imgs", photos=BIG_PHOTOS[:4], broken=False)
    run_ingest([str(src)], ingest_config(str(tmp_path / "one")), per_shard=2)
    run_ingest([str(src)], ingest_config(str(tmp_path / "two")), per_shard=2, workers=2)
    one = {p.name: p.read_bytes() for p in list_shards(tmp_path / "one")}
    assert one == {p.name: p.read_bytes() for p in list_shards(tmp_path / "two")}


@pytest.mark.parametrize("bad", ["3", "2/2", "-1/4", "a/b", "1/0"])
def test_bad_shard_spec(bad):
    with pytest.raises(LensError, match="i/N|0 <= i < N"):
        parse_shard(bad)


def test_names_that_are_not_utf8_keep_the_run_and_their_images(tmp_path):
    # Linux names are bytes; Python hands these over as lone surrogates that no UTF-8 writer accepts
    src = make_folder(tmp_path / "imgs", photos=("astronaut",), broken=False)
    (src / os.fsdecode(b"caf\xe9.jpg")).write_bytes(jpeg(photo("rocket")))
    shard = tmp_path / "in.tar"
    with tarfile.open(
        shard, "w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        for name in (os.fsdecode(b"\xff\xfe.jpg"), "ok.jpg"):
            data = jpeg(photo("coffee"))
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "raw"
    run_ingest([str(src), str(shard)], ingest_config(str(out)))
    sources = sorted(read_meta(s)["source"].rsplit("/", 1)[1] for s in _samples(out))
    assert sources == ["astronaut.jpg", "caf\\xe9.jpg", "in.tar:\\xff\\xfe", "in.tar:ok"]
    assert _counts(out) == {"seen": 4, "written": 4}


def test_symlinks_stay_inside_the_input_and_loops_are_counted(tmp_path):
    src = make_folder(tmp_path / "imgs", photos=("astronaut", "rocket"), broken=False)
    outside = make_folder(tmp_path / "elsewhere", photos=("coffee",), broken=False)
    (outside / "secret.txt").write_text("root:x:0:0")
    (src / "passwd.jpg").symlink_to(outside / "coffee.jpg")  # a file link out of the tree
    (src / "linked_dir").symlink_to(outside)  # a folder link out of the tree
    (src / "rocket.txt").symlink_to(outside / "secret.txt")  # a sidecar link out of the tree
    (src / "again.jpg").symlink_to(src / "astronaut.jpg")  # inside the tree: followed
    (src / "loop_a.jpg").symlink_to(src / "loop_b.jpg")
    (src / "loop_b.jpg").symlink_to(src / "loop_a.jpg")
    out = tmp_path / "raw"
    run_ingest([str(src)], ingest_config(str(out)))
    metas = {read_meta(s)["source"].rsplit("/", 1)[1]: read_meta(s) for s in _samples(out)}
    assert sorted(metas) == ["again.jpg", "astronaut.jpg", "rocket.jpg"]
    assert metas["rocket.jpg"]["alt"] is None  # the linked sidecar was not read
    assert _counts(out) == {"seen": 3, "written": 3, "outside_input": 2, "symlink_loop": 2}
