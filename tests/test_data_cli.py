import json

from lens.cli import main
from lens.data.sample import read_meta
from lens.data.shards import iter_shard, list_shards
from tests.test_data_helpers import BIG_PHOTOS, ChatServer, make_folder


def test_folder_to_captioned_shards_in_three_commands(tmp_path, monkeypatch, capsys):
    src = make_folder(tmp_path / "photos")  # real photos + truncated, non-image, empty, bomb files
    raw, clean, cap = tmp_path / "raw", tmp_path / "clean", tmp_path / "captioned"
    server = ChatServer(script=["429", "500"])
    try:
        assert main(["data", "ingest", str(src), "--out", str(raw), "--per-shard", "4"]) == 0
        assert main(["data", "filter", str(raw), "--out", str(clean)]) == 0
        monkeypatch.setenv("LENS_TEST_KEY", "secret")
        args = ["data", "caption", str(clean), "--out", str(cap), "--model", "m", "--base-url", server.url]
        args += [
            "--api-key-env",
            "LENS_TEST_KEY",
            "--backoff-base",
            "0.01",
            "--price-in",
            "2",
            "--price-out",
            "8",
        ]
        assert main(args) == 0
    finally:
        server.close()
    samples = [s for sh in list_shards(cap) for s in iter_shard(sh)]
    assert sorted(read_meta(s)["source"].rsplit("/", 1)[1] for s in samples) == sorted(
        f"{n}.jpg" for n in BIG_PHOTOS
    )
    for s in samples:
        meta = read_meta(s)
        assert (
            "jpg" in s and s["caption.txt"] and meta["bucket"] and meta["width"] * meta["height"] >= 384 * 384
        )
        assert {"corrupt", "area", "clarity", "entropy", "luminance"} <= set(meta["filters"])
    report = json.loads((cap / "report.json").read_text())
    assert [s["command"] for s in report["steps"]] == ["ingest", "filter", "caption"]
    ingest = report["steps"][0]["counts"]
    assert (ingest["truncated"], ingest["not_image"], ingest["too_large"]) == (1, 2, 1)
    assert report["steps"][1]["stages"]["area"]["dropped"] == 2
    assert report["steps"][2]["captions"]["status"] == {"ok": len(BIG_PHOTOS)}
    md = (cap / "report.md").read_text()
    assert "## filter" in md and "| area |" in md and "![caption_lengths.png]" in md
    assert (cap / "examples_area.png").is_file()


def test_cli_errors_are_one_line_with_advice(tmp_path, capsys):
    assert main(["data", "filter", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lens data: error:") and "not a directory" in err and "\n" not in err
    assert main(["data", "ingest", str(tmp_path), "--out", str(tmp_path / "o"), "--shard", "4/4"]) == 2
    assert "0 <= i < N" in capsys.readouterr().err
