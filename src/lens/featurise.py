"""`lens prepare`: encode an image source once with the frozen VAE and text LM into feature shards (bf16).

The input is any image source `data.shards` can name (`lens.source.spec`: image shards, parquet,
...). Each output sample (`lens.source.tar.feature_members`) holds `features.safetensors` (`latent`
(128, h, w) at the sample's bucket size, `text_dense` and, when the sample has a brief caption,
`text_brief` (S, L, D) valid-token LM features, and `places_dense` / `places_brief` (S, 2) token places
for captions with grounding spans, `lens.text.grounding`) and `json` (key, size, captions, the
spans). `prepare.json` in
the output folder records the encoder source, layers and buckets. Training reads these shards with
the same loader (`data.kind=features`), skipping the encoders entirely. Caption dropout is applied at
training time.

Sharding the work: `--rank R --world W` processes input parts R, R+W, R+2W, ... (shards, parquet row
groups); run W of them (on W GPUs or hosts) into the same output folder.
"""

from __future__ import annotations

import fcntl
import json
import logging
from pathlib import Path

import torch
from tqdm import tqdm

from lens.data.shards import ShardWriter
from lens.errors import LensError
from lens.source.base import BadSample, Features
from lens.source.spec import open_source
from lens.source.tar import feature_members
from lens.train.buckets import parse_buckets
from lens.train.encoders import FrozenEncoders
from lens.train.samples import Sample, caption_spans, decode_sample, to_pixels

log = logging.getLogger("lens.train")


def _encode_chunk(chunk: list[tuple[Sample, str | None, tuple | None]], enc: FrozenEncoders) -> list[dict]:
    """Encode a few samples (sample, brief caption, its spans): one VAE call per size, one LM call
    for all captions."""
    latents: dict[int, torch.Tensor] = {}
    by_size: dict[tuple, list[int]] = {}
    for i, (s, _, _) in enumerate(chunk):
        by_size.setdefault(s.pixels.shape[:2], []).append(i)
    for idx in by_size.values():
        z = enc.encode_images(to_pixels([chunk[i][0] for i in idx]))  # (b, 128, h, w)
        for j, i in enumerate(idx):
            latents[i] = z[j]
    captions = [s.caption for s, _, _ in chunk] + [b for _, b, _ in chunk if b]
    feats = enc.encode_text(captions)
    dense, brief = feats[: len(chunk)], iter(feats[len(chunk) :])
    out = []
    for i, (s, b, b_spans) in enumerate(chunk):
        texts = {"dense": dense[i].to(torch.bfloat16).cpu()}
        spans = {"dense": s.spans}
        if b:
            texts["brief"] = next(brief).to(torch.bfloat16).cpu()
            spans["brief"] = b_spans
        spans = {k: v for k, v in spans.items() if v}
        texts_of = {"dense": s.caption, "brief": b}
        places = {
            k: p.cpu()
            for k, p in zip(spans, enc.text_places([texts_of[k] for k in spans], list(spans.values())))
        }
        features = Features(latents[i].to(torch.bfloat16).contiguous().cpu(), texts, places)
        grounding = {k: [list(x) for x in v] for k, v in spans.items()}
        out.append(feature_members(s.key, features, s.caption, b, grounding))
    return out


def prepare_shards(
    cfg,
    source: str,
    out_dir: str | Path,
    *,
    samples_per_shard: int = 1000,
    rank: int = 0,
    world: int = 1,
    chunk: int = 16,
) -> dict:
    """Encode `source` (this rank's share of its parts) into `out_dir`; returns counts."""
    reader = open_source(source, cfg.data)
    if reader.kind() != "images":
        raise LensError(f"{source} holds features already; `lens prepare` encodes images")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = list(range(len(reader.parts)))[rank::world]
    buckets = parse_buckets(cfg.data.buckets, cfg.data.batch_size)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.train.device != "cpu" else "cpu")
    enc = FrozenEncoders(cfg, device)
    data_cfg = type(cfg.data)(**{**vars(cfg.data), "caption": "dense", "caption_dropout": 0.0})
    counts = {"samples": 0, "bad_samples": 0, "bad_shards": 0, "shards_written": 0}
    writer, pending = None, []

    def flush():
        nonlocal writer
        for item in _encode_chunk(pending, enc):
            if writer is None:
                writer = ShardWriter(out / f"features-{rank:03d}-{counts['shards_written']:05d}.tar")
            writer.write(item)
            counts["samples"] += 1
            if writer.count >= samples_per_shard:
                writer.close()
                writer = None
                counts["shards_written"] += 1
        pending.clear()

    for part in tqdm(parts, desc=f"prepare rank {rank}", unit="part"):
        damage: list[str] = []
        for record in reader.records(part, damage):
            try:
                sample = decode_sample(record, part, 0, buckets, data_cfg, cfg.train.seed)
                brief_spans = caption_spans(record, "brief", record.brief) if record.brief else None
            except BadSample as err:
                counts["bad_samples"] += 1
                log.warning("skipped sample: %s", err)
                continue
            pending.append((sample, record.brief, brief_spans))
            if len(pending) >= chunk:
                flush()
        if damage:
            counts["bad_shards"] += 1
            log.warning("skipped damaged or missing shard: %s", damage[0])
    if pending:
        flush()
    if writer is not None:
        writer.close()
        counts["shards_written"] += 1
    manifest = {
        "encoders": cfg.encoders.source,
        "selected_layer_index": list(cfg.model.selected_layer_index),
        "enc_hidden_dim": cfg.model.enc_hidden_dim,
        "buckets": cfg.data.buckets,
        "source": source,
        f"rank{rank}": counts,
    }
    manifest_path = out / "prepare.json"
    with open(out / ".prepare.lock", "w") as lock:  # ranks finish in any order: one update at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if manifest_path.exists():
            manifest = {**json.loads(manifest_path.read_text()), **manifest}
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return counts
