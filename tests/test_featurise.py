"""`lens prepare`: feature shards hold what the online encoders compute, and training reads them."""

import torch

from lens.cli import main
from lens.data.sample import FEATURES_EXT
from lens.data.shards import iter_shard
from lens.source.tar import record_of
from lens.source.world import write_synthetic_shards
from lens.train.buckets import parse_buckets
from lens.train.encoders import FrozenEncoders
from lens.train.loop import train
from lens.train.presets import load_config
from lens.train.samples import decode_sample, to_pixels


def test_prepared_features_match_online_encoding_and_train(tmp_path):
    from safetensors.torch import load as load_bytes

    src = tmp_path / "images"
    write_synthetic_shards(src, samples=10, shards=2, seed=5)
    out = tmp_path / "features"
    assert main(["prepare", str(src), str(out), "--config", "debug", "--samples-per-shard", "6"]) == 0
    shards = sorted(out.glob("*.tar"))
    assert len(shards) == 2 and (out / "prepare.json").is_file()

    cfg = load_config("debug")
    raw_image = next(iter_shard(sorted(src.glob("*.tar"))[0]))
    raw_feat = next(iter_shard(shards[0]))
    tensors = load_bytes(raw_feat[FEATURES_EXT])
    assert raw_feat["__key__"] == raw_image["__key__"] and tensors["latent"].dtype == torch.bfloat16
    enc = FrozenEncoders(cfg, torch.device("cpu"))
    cfg.data.caption_dropout = 0.0
    sample = decode_sample(record_of(raw_image), 0, 0, parse_buckets(cfg.data.buckets), cfg.data, 0)

    latent = enc.encode_images(to_pixels([sample]))[0]
    text = enc.encode_text([raw_image["caption.txt"].decode()])[0]
    assert torch.allclose(tensors["latent"].float(), latent, atol=0.02, rtol=0.02)
    assert torch.allclose(tensors["text_dense"].float(), text, atol=0.05, rtol=0.02)
    assert tensors["text_brief"].shape[1:] == text.shape[1:]

    run = tmp_path / "run"
    fast = [
        "train.steps=4",
        "log.eval_every=0",
        "log.sample_every=0",
        "log.tensorboard=false",
        f"data.shards={out}",
    ]
    summary = train(load_config("debug", fast + [f"run_dir={run}"]))
    assert summary["step"] == 4 and all(torch.isfinite(torch.tensor(summary["losses"])))
    assert "shards (features)" in (run / "train.log").read_text()
