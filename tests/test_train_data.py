"""Training data: bucket batches, packs, caption policy, exact loader position, bad shards, new world sizes."""

import copy
import io
import json
from collections import Counter

import pytest
from PIL import Image

from lens.data.shards import ShardWriter
from lens.errors import LensError
from lens.source.spec import expand_shards
from lens.source.tar import TarSource
from lens.source.world import write_synthetic_shards
from lens.train.buckets import parse_buckets
from lens.train.loader import TrainLoader, epoch_order, merge_states
from lens.train.presets import load_config
from lens.train.samples import choose_caption


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    return [str(p) for p in write_synthetic_shards(out, samples=40, shards=4, seed=1)]


def _loader(paths, rank=0, world=1, **overrides):
    cfg = load_config("debug", [f"data.{k}={v}" for k, v in overrides.items()])
    buckets = parse_buckets(cfg.data.buckets)
    tokens = cfg.data.pack_tokens or 48
    return TrainLoader(
        TarSource(paths), buckets, cfg.data, seed=3, rank=rank, world=world, pack_tokens=tokens, kind="images"
    )


def _keys(loader, n):
    return [[(s.key, s.caption) for s in next(loader).samples] for _ in range(n)]


def test_bucket_batches_hold_one_size_and_the_bucket_batch(shards):
    loader = _loader(shards, shuffle_buffer=8)
    sizes = Counter()
    for _ in range(8):
        mb = next(loader)
        assert not mb.packed and len({s.pixels.shape for s in mb.samples}) == 1
        b = mb.samples[0].bucket
        assert len(mb.samples) == b.batch_size and mb.samples[0].pixels.shape == (b.height, b.width, 3)
        sizes[(b.height, b.width)] += 1
    assert len(sizes) >= 2  # the synthetic images come in several aspect ratios
    loader.close()


def test_packs_mix_sizes_within_the_token_budget(shards):
    loader = _loader(shards, packing="true", pack_tokens=48, shuffle_buffer=8)
    mixed = False
    for _ in range(6):
        mb = next(loader)
        assert mb.packed and mb.image_tokens <= 48
        mixed |= len({s.bucket for s in mb.samples}) > 1
    assert mixed
    loader.close()


@pytest.mark.parametrize("prefetch, workers", [(0, 0), (2, 3)])
def test_restored_loader_continues_exactly(shards, prefetch, workers):
    kw = dict(shuffle_buffer=8, prefetch=prefetch, workers=workers, caption="mixed", caption_dropout=0.3)
    a = _loader(shards, **kw)
    _keys(a, 5)
    state = copy.deepcopy(a.state_dict())
    expected = _keys(a, 6)  # crosses an epoch boundary (40 samples / 4 per batch)
    a.close()
    b = _loader(shards, **kw)
    b.load_state_dict([json.loads(json.dumps(state))])  # the state survives JSON, as in a checkpoint
    assert _keys(b, 6) == expected
    b.close()


def test_a_buffer_holding_one_record_from_two_epochs_restores_both(shards, caplog):
    # a shuffle buffer larger than the data set holds some records twice, once per epoch; each copy
    # keeps its own epoch's caption draw after a restore
    kw = dict(shuffle_buffer=64, caption="mixed", caption_dropout=0.3)
    a = _loader(shards, **kw)
    _keys(a, 8)
    state = copy.deepcopy(a.state_dict())
    refs = [tuple(r[:2]) for r in state["buffer"]]
    assert len(refs) > len(set(refs))  # the case under test: the same (part, key) twice
    expected = _keys(a, 20)
    a.close()
    b = _loader(shards, **kw)
    with caplog.at_level("WARNING"):
        b.load_state_dict([json.loads(json.dumps(state))])
    assert "could not be read again" not in caplog.text
    assert _keys(b, 20) == expected
    b.close()


def test_caption_policy_is_per_sample_and_deterministic():
    import numpy as np

    draws = [choose_caption("mixed", 0.5, 0.1, np.random.default_rng([0, 0, i])) for i in range(2000)]
    counts = Counter(draws)
    assert 0.07 < counts[None] / 2000 < 0.13 and abs(counts["brief"] - counts["dense"]) < 200
    assert {choose_caption("brief", 0.5, 0.0, np.random.default_rng(i)) for i in range(50)} == {"brief"}
    again = [choose_caption("mixed", 0.5, 0.1, np.random.default_rng([0, 0, i])) for i in range(2000)]
    assert again == draws


def test_bad_and_missing_shards_are_skipped_and_counted(shards, tmp_path, caplog):
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar file at all" * 100)
    with ShardWriter(tmp_path / "mixed.tar") as w:
        w.write({"__key__": "broken", "png": b"\x89PNG broken", "caption.txt": "x"})
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (255, 0, 0)).save(buf, "PNG")
        for i in range(8):
            w.write({"__key__": f"ok{i}", "png": buf.getvalue(), "caption.txt": "a red square"})
    paths = [str(tmp_path / "missing.tar"), str(garbage), str(tmp_path / "mixed.tar")]
    loader = _loader(paths, shuffle_buffer=2, prefetch=0)
    keys = {s.key for _ in range(4) for s in next(loader).samples}
    assert keys <= {f"ok{i}" for i in range(8)}
    stats = loader.stats
    assert stats["bad_shards"] >= 2 and stats["bad_samples"] >= 1
    assert "missing.tar" in caplog.text and "broken" in caplog.text
    with pytest.raises(LensError, match="no usable sample"):
        next(_loader(paths[:2], prefetch=0))


def test_shard_specs_expand(shards):
    folder = shards[0].rsplit("/", 1)[0]
    assert expand_shards(folder) == sorted(shards)
    assert expand_shards(f"{folder}/world-{{000000..000001}}.tar") == sorted(shards)[:2]
    assert expand_shards(f"{folder}/*.tar") == sorted(shards)
    with pytest.raises(LensError, match="matches no"):
        expand_shards(f"{folder}/*.nothing")


def test_new_process_count_skips_finished_shards(shards):
    kw = dict(shuffle_buffer=2, prefetch=0, buckets="64x64:4")
    loaders = [_loader(shards, rank=r, world=2, **kw) for r in range(2)]
    for loader in loaders:
        _keys(loader, 3)  # 14-17 samples of the rank's two 10-sample shards: the first one is finished
    states = [json.loads(json.dumps(loader.state_dict())) for loader in loaders]
    done = {s for st in states for s in st["cursor"]["completed"]}
    assert len(done) == 2 and all(st["cursor"]["epoch"] == 0 for st in states)
    merged = merge_states(states, rank=0, world=1, seed=3, n_shards=len(shards))
    assert set(merged["cursor"]["assigned"]) == set(range(4)) - done
    assert merged["cursor"]["assigned"] == [i for i in epoch_order(3, 0, 4) if i not in done]
    one = _loader(shards, **kw)
    one.load_state_dict(states)
    assert one.cursor.epoch == 0 and one.stats["samples"] == sum(s["counters"]["samples"] for s in states)
    next(one)
    assert not done & set(one.cursor.completed)


def test_decode_threads_do_not_change_the_stream(shards):
    serial, threaded = _loader(shards, workers=0, prefetch=0), _loader(shards, workers=3, prefetch=0)
    assert _keys(serial, 6) == _keys(threaded, 6)
    threaded.close()
