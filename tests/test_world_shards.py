"""WebDataset shards: layout, contents that match the scene graph, determinism and the CLI."""

import json
import os
import tarfile

import numpy as np
import pytest
import webdataset as wds

from lens.cli import main
from lens.cli.world import STYLES
from lens.errors import LensError
from lens.world import (
    Scene,
    brief_caption,
    dense_caption,
    read_shards,
    render_scene,
    rewrite_prompt,
    write_shards,
)
from lens.world.captions import CAPTION_STYLES
from lens.world.vocab import SIZES


def test_write_and_read_shards_with_webdataset(tmp_path):
    paths = write_shards(str(tmp_path), n=25, height=64, width=96, seed=3, shard_size=10)
    assert [os.path.basename(p) for p in paths] == [
        "world-000000.tar",
        "world-000001.tar",
        "world-000002.tar",
    ]
    with tarfile.open(paths[0]) as tar:
        names = tar.getnames()
    assert {"00000000.png", "00000000.caption.txt", "00000000.brief.txt", "00000000.json"} <= set(names)
    samples = list(wds.WebDataset(paths, shardshuffle=False).decode("pil"))
    assert len(samples) == 25
    for d in samples[:8]:
        scene = Scene.from_dict(d["json"])
        assert d["png"].size == (96, 64)
        assert np.array_equal(np.asarray(d["png"].convert("RGB")), np.asarray(render_scene(scene, 64, 96)))
        assert d["caption.txt"] == dense_caption(scene)
        assert d["brief.txt"] == brief_caption(scene)
    back = list(read_shards(str(tmp_path)))
    assert [s.key for s in back] == [f"{i:08d}" for i in range(25)]
    assert back[4].caption == samples[4]["caption.txt"]


def test_shards_are_deterministic_and_refuse_to_overwrite(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_shards(str(a), n=6, seed=1)
    write_shards(str(b), n=6, seed=1)

    def read(p):
        return [(s.caption, s.scene.to_json(), np.asarray(s.image).tobytes()) for s in read_shards(str(p))]

    assert read(a) == read(b)
    with pytest.raises(LensError, match="already holds"):
        write_shards(str(a), n=2)
    with pytest.raises(LensError):
        write_shards(str(tmp_path / "c"), n=0)


def test_cli_generate(tmp_path, capsys):
    out = tmp_path / "shards"
    assert (
        main(["world", "generate", "--out", str(out), "--n", "5", "--size", "96x64", "--shard-size", "2"])
        == 0
    )
    assert len(list(out.glob("world-*.tar"))) == 3
    sample = next(read_shards(str(out)))
    assert sample.image.size == (64, 96)
    assert main(["world", "generate", "--out", str(tmp_path / "x"), "--n", "5", "--size", "50x64"]) == 2
    assert "multiple of 16" in capsys.readouterr().err
    big = tmp_path / "big"
    assert (
        main(["world", "generate", "--out", str(big), "--n", "2", "--objects", "1", "--object-scale", "1.8"])
        == 0
    )
    radius = next(read_shards(str(big))).scene.objects[0].radius
    assert radius > 1.7 * SIZES["small"]  # every size word scaled, the smallest included
    assert main(["world", "generate", "--out", str(tmp_path / "y"), "--n", "2", "--object-scale", "3"]) == 2
    assert "object scale" in capsys.readouterr().err
    assert main(["world", "sample", "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    scene = Scene.from_dict(json.loads(printed.split("scene: ", 1)[1]))
    assert scene.seed == 2
    for style in ("compact", "verbose"):
        assert f"dense ({style}): {dense_caption(scene, style=style)}\n" in printed


def test_caption_style_of_shards_and_cli(tmp_path, capsys):
    assert STYLES == CAPTION_STYLES  # the CLI's choices (kept literal so `lens --help` stays fast)
    verbose = list(read_shards(write_shards(str(tmp_path / "v"), 3, seed=5, caption_style="verbose")[0]))
    compact = list(read_shards(write_shards(str(tmp_path / "c"), 3, seed=5)[0]))
    for v, c in zip(verbose, compact):
        assert v.scene == c.scene and v.brief == c.brief
        assert v.caption == dense_caption(v.scene, style="verbose") != c.caption
        assert c.caption == dense_caption(c.scene, style="compact")
    with pytest.raises(LensError, match="unknown caption style 'long'; use one of compact, verbose"):
        write_shards(str(tmp_path / "bad"), 2, caption_style="long")
    assert not (tmp_path / "bad").exists()  # refused before writing anything
    out = tmp_path / "cli"
    args = ["world", "generate", "--out", str(out), "--n", "3", "--seed", "5", "--caption-style", "verbose"]
    assert main(args) == 0
    assert [s.caption for s in read_shards(str(out))] == [s.caption for s in verbose]
    capsys.readouterr()
    prompt = "a photo of a red circle left of a blue star"
    for style in ("compact", "verbose"):
        assert main(["world", "reason", prompt, "--caption-style", style]) == 0
        assert capsys.readouterr().out == rewrite_prompt(prompt, style=style) + "\n"
    with pytest.raises(SystemExit):
        main(["world", "reason", prompt, "--caption-style", "long"])
    assert "invalid choice: 'long'" in capsys.readouterr().err


def test_objects_option_gives_scenes_of_exactly_n_objects(tmp_path):
    out = tmp_path / "one"
    assert main(["world", "generate", "--out", str(out), "--n", "12", "--objects", "1"]) == 0
    samples = list(read_shards(str(out)))
    assert [len(s.scene.objects) for s in samples] == [1] * 12
    assert len({s.scene.objects[0].shape for s in samples}) > 1  # still a varied world
    assert all(s.scene.objects[0].shape in s.caption for s in samples)
    mixed = list(read_shards(write_shards(str(tmp_path / "mixed"), 12)[0]))
    assert max(len(s.scene.objects) for s in mixed) > 1  # the default mixture is unchanged
    with pytest.raises(LensError, match="objects must be 1..4"):
        write_shards(str(tmp_path / "bad"), 2, objects=5)


def test_training_synthetic_shards_are_world_shards(tmp_path):
    """data.shards=synthetic and `lens world generate` share one writer: the same members and the same
    scene-graph JSON for the same world sample."""
    from lens.data.shards import iter_shard
    from lens.source.world import SIZES, write_synthetic_shards
    from lens.world import make_sample
    from lens.world.shards import sample_members

    paths = write_synthetic_shards(tmp_path / "syn", samples=6, shards=2, seed=3)
    assert [p.name for p in paths] == ["world-000000.tar", "world-000001.tar"]
    written = [s for p in paths for s in iter_shard(p)]
    assert [s["__key__"] for s in written] == [f"{i:08d}" for i in range(6)]
    for i, s in enumerate(written):
        h, w = SIZES[(7 * i + 3) % len(SIZES)]
        sample = make_sample(3, i, h, w)
        expected = sample_members(sample)
        assert s["json"] == expected["json"].encode() and s["png"] == expected["png"]
        assert Scene.from_dict(json.loads(s["json"])).to_json() == sample.scene.to_json()
    assert [x.caption for x in read_shards(str(tmp_path / "syn"))] == [
        s["caption.txt"].decode() for s in written
    ]
