"""`lens data caption`: caption every image of the slice's shards, with bounded concurrency.

Requests run on `concurrency` threads (the work is network-bound); each finished image (captioned or
flagged) is written to the ledger before anything else, so stopping at any point loses at most the
requests in flight. An interrupt or error stops new requests, waits for those in flight and records
them. Output shards are written once every image of an input shard is in the ledger; a shard with
failed requests stays pending until the next run of the same command finishes it.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from lens.data.caption.client import CaptionClient, CaptionResult, CaptionSettings
from lens.data.caption.ledger import Ledger
from lens.data.sample import CAPTION_EXTS, dump_meta, image_ext, read_meta
from lens.data.shards import ShardWriter, iter_shard, list_shards, split_name
from lens.data.units import is_done, select, stats_path, write_json_atomic, write_provenance
from lens.errors import LensError


def make_openai_client(base_url: str | None, api_key_env: str, azure_api_version: str | None, timeout: float):
    """An openai client with the SDK's own retries off (ours handle 429/5xx/timeouts).

    Its transport bounds each request as a whole by `timeout`, which httpx alone does not (deadline.py).
    """
    import openai

    from lens.data.caption.deadline import DeadlineTransport

    key = os.environ.get(api_key_env)
    if not key:
        if base_url and any(h in base_url for h in ("127.0.0.1", "localhost", "0.0.0.0")):
            key = "EMPTY"  # vLLM / SGLang accept any key unless started with --api-key
        else:
            raise LensError(
                f"set ${api_key_env} to your API key (or --api-key-env NAME for another variable)"
            )
    http_client = openai.DefaultHttpxClient(transport=DeadlineTransport())
    if azure_api_version:
        if not base_url:
            raise LensError("Azure OpenAI needs --base-url https://<resource>.openai.azure.com")
        return openai.AzureOpenAI(
            azure_endpoint=base_url,
            api_version=azure_api_version,
            api_key=key,
            max_retries=0,
            timeout=timeout,
            http_client=http_client,
        )
    return openai.OpenAI(
        base_url=base_url, api_key=key, max_retries=0, timeout=timeout, http_client=http_client
    )


def count_samples(path: Path) -> int:
    """Samples with an image in a shard, from the tar headers alone."""
    keys = set()
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            key, ext = split_name(m.name)
            if ext in ("jpg", "png", "webp"):
                keys.add(key)
    return len(keys)


def run_caption(
    inputs: list[str],
    out: str,
    settings: CaptionSettings,
    client,
    *,
    shard=(0, 1),
    concurrency: int = 16,
    limit: int | None = None,
    keep_flagged: bool = False,
    overwrite: bool = False,
    sleep=time.sleep,
) -> dict:
    """Caption the slice; returns this run's counters (requests, tokens, cost, shards written)."""
    from tqdm import tqdm

    if concurrency < 1:
        raise LensError(f"--concurrency must be >= 1, got {concurrency}")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_provenance(out_dir, "caption", inputs, {"model": settings.model, "prompt": settings.prompt})
    shards = [s for d in inputs for s in list_shards(d)]
    mine = select([_unit(s) for s in shards], shard)
    captioner = CaptionClient(client, settings, sleep=sleep)
    run: Counter = Counter()
    with Ledger(out_dir / "ledger", shard) as ledger:
        total = sum(count_samples(Path(u.path)) for u in mine)
        todo = total - sum(1 for k in ledger.done if k.split("/", 1)[0] in {u.name for u in mine})
        todo = min(todo, limit) if limit is not None else todo
        with tqdm(
            total=max(todo, 0), desc=f"caption {settings.model}", unit="img", dynamic_ncols=True
        ) as bar:
            _caption_all(mine, ledger, captioner, concurrency, limit, run, bar)
        written = [_write_shard(u, out_dir, ledger, settings, keep_flagged, overwrite) for u in mine]
    run["shards_written"] = sum(1 for w in written if w == "written")
    run["shards_pending"] = sum(1 for w in written if w == "pending")
    if run["shards_pending"]:
        print(f"caption: {run['shards_pending']} shard(s) wait for failed images; run the same command again")
    return dict(run)


def _unit(shard: Path):
    from lens.data.units import Unit

    return Unit(shard.name.removesuffix(".tar"), "tar", path=str(shard))


def _pending(units, ledger: Ledger):
    for u in units:
        for sample in iter_shard(u.path):
            key = f"{u.name}/{sample['__key__']}"
            ext = image_ext(sample)
            if ext and key not in ledger:
                yield key, sample[ext]


def _caption_all(
    units, ledger: Ledger, captioner: CaptionClient, concurrency: int, limit, run: Counter, bar
) -> None:
    def record(key: str, res: CaptionResult) -> None:
        run["requests"] += res.attempts
        run["prompt_tokens"] += res.prompt_tokens
        run["completion_tokens"] += res.completion_tokens
        run[res.status] += 1
        cost = captioner.cost(res)
        run["cost_micro"] += round(cost * 1e6)
        if res.status != "failed":  # failed = never answered: not paid, retried by the next run
            ledger.append(
                {
                    "key": key,
                    "status": res.status,
                    "caption": res.caption,
                    "reason": res.reason,
                    "attempts": res.attempts,
                    "prompt_tokens": res.prompt_tokens,
                    "completion_tokens": res.completion_tokens,
                    "cost": cost,
                    "finish_reason": res.finish_reason,
                    "model": captioner.s.model,
                    "prompt": captioner.s.prompt,
                }
            )
        bar.update(1)
        bar.set_postfix(
            tok=run["prompt_tokens"] + run["completion_tokens"],
            cost=f"{run['cost_micro'] / 1e6:.2f}",
            flagged=run["flagged"],
            failed=run["failed"],
        )

    submitted = 0
    with ThreadPoolExecutor(concurrency, thread_name_prefix="caption") as pool:
        in_flight: dict = {}
        try:
            for key, image in _pending(units, ledger):
                if limit is not None and submitted >= limit:
                    break
                while len(in_flight) >= concurrency:
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for fut in done:
                        record(in_flight.pop(fut), fut.result())
                in_flight[pool.submit(captioner.caption, image)] = key
                submitted += 1
        finally:  # on success, error or Ctrl-C: what is in flight finishes and is recorded
            for fut in list(in_flight):
                with contextlib.suppress(Exception):  # a fatal error is already on its way up
                    record(in_flight.pop(fut), fut.result())


def _write_shard(
    unit, out_dir: Path, ledger: Ledger, settings: CaptionSettings, keep_flagged: bool, overwrite: bool
) -> str:
    if is_done(out_dir, unit.name) and not overwrite:
        return "done"
    samples = [s for s in iter_shard(unit.path) if image_ext(s)]
    if any(f"{unit.name}/{s['__key__']}" not in ledger for s in samples):
        return "pending"
    counts: Counter = Counter()
    ext = CAPTION_EXTS[settings.prompt]
    with ShardWriter(out_dir / f"{unit.name}.tar") as writer:
        for s in samples:
            rec = ledger.done[f"{unit.name}/{s['__key__']}"]
            counts["seen"] += 1
            counts[rec["status"]] += 1
            if rec["status"] != "ok" and not keep_flagged:
                continue
            meta = read_meta(s)
            meta.setdefault("captions", {})[settings.prompt] = {
                k: rec.get(k)
                for k in ("model", "status", "reason", "attempts", "prompt_tokens", "completion_tokens")
            }
            sample = {k: v for k, v in s.items() if k != "__url__"}
            sample[ext] = rec["caption"].encode()
            sample["json"] = dump_meta(meta)
            writer.write(sample)
            counts["written"] += 1
    write_json_atomic(
        stats_path(out_dir, unit.name), {"command": "caption", "unit": unit.name, "counts": dict(counts)}
    )
    return "written"
