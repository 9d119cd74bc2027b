"""`lens data ingest | filter | caption | report`: the Lens-800M curation pipeline (docs/data.md)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="curate images: ingest, filter, caption, report")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="STEP")

    def common(q: argparse.ArgumentParser, workers: bool = True) -> None:
        q.add_argument("--out", required=True, help="output folder (shards, stats, report)")
        q.add_argument(
            "--shard",
            default=None,
            metavar="i/N",
            help="run slice i of N (0-based), e.g. $SLURM_ARRAY_TASK_ID/64",
        )
        q.add_argument("--overwrite", action="store_true", help="redo shards that are already finished")
        if workers:
            q.add_argument("--workers", type=int, default=1, help="local processes (default 1)")
            q.add_argument(
                "--executor", choices=("local", "ray"), default="local", help="ray needs lens[ray]"
            )

    q = sub.add_parser("ingest", help="image folders / tar shards / path lists -> normalised shards")
    q.add_argument("inputs", nargs="+", help="folders, .tar shards, or .parquet/.csv/.tsv/.jsonl path lists")
    common(q)
    q.add_argument("--per-shard", type=int, default=1000, help="images per output shard (default 1000)")
    q.add_argument("--format", default="jpg", choices=("jpg", "png", "webp"), help="stored image format")
    q.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    q.add_argument(
        "--max-pixels", type=int, default=100_000_000, help="decompression-bomb limit (default 100M)"
    )
    q.add_argument("--path-column", default=None, help="path column of a list (default: path/image/file...)")
    q.add_argument(
        "--text-column", default=None, help="alt-text column of a list (default: caption/alt/text)"
    )
    q.set_defaults(func=_ingest)

    q = sub.add_parser("filter", help="the nine cleaning stages, in the paper's order")
    q.add_argument("inputs", nargs="+", help="folders of shards (from ingest)")
    common(q)
    q.add_argument("--stages", default=None, help="comma-separated subset (default: all that can run)")
    q.add_argument("--min-area", type=int, default=384 * 384)
    q.add_argument("--clarity-min", type=float, default=20.0)
    q.add_argument("--entropy-min", type=float, default=3.5)
    q.add_argument("--luma-low", type=float, default=0.10)
    q.add_argument("--luma-high", type=float, default=0.92)
    q.add_argument("--nsfw-model", default=None, help="image-classification model id or folder")
    q.add_argument("--nsfw-labels", default=None, help="comma-separated positive labels")
    q.add_argument("--nsfw-max", type=float, default=0.5)
    q.add_argument(
        "--aesthetic-model", default=None, help="SigLIP/CLIP model id or folder (v2.5: SigLIP so400m)"
    )
    q.add_argument("--aesthetic-head", default=None, help="safetensors linear head")
    q.add_argument("--aesthetic-min", type=float, default=3.0)
    q.add_argument("--watermark-model", default=None, help="image-classification model id or folder")
    q.add_argument("--watermark-labels", default=None, help="comma-separated positive labels")
    q.add_argument("--watermark-max", type=float, default=0.5)
    q.add_argument("--dedup-model", default=None, help="CLIP/SigLIP model id or folder for near-duplicates")
    q.add_argument("--dedup-max", type=float, default=0.985, help="drop cosine above this")
    q.add_argument("--device", default="cpu")
    q.add_argument("--batch-size", type=int, default=32)
    q.set_defaults(func=_filter)

    q = sub.add_parser("caption", help="dense recaptioning through an OpenAI-compatible API")
    q.add_argument("inputs", nargs="+", help="folders of shards (from filter)")
    common(q, workers=False)
    q.add_argument("--model", required=True, help="e.g. gpt-4.1, or the name a vLLM/SGLang server serves")
    q.add_argument(
        "--base-url", default=None, help="API base, e.g. http://127.0.0.1:8000/v1 (default OpenAI)"
    )
    q.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    q.add_argument("--azure-api-version", default=None, help="use Azure OpenAI (with --base-url = endpoint)")
    q.add_argument("--prompt", default="dense", choices=("dense", "brief"), help="brief is for ablations")
    q.add_argument("--concurrency", type=int, default=16)
    q.add_argument("--limit", type=int, default=None, help="caption at most this many new images (a trial)")
    q.add_argument("--max-tokens", type=int, default=1024)
    q.add_argument("--temperature", type=float, default=0.2)
    q.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    q.add_argument("--max-retries", type=int, default=6, help="per image, for 429/5xx/timeouts")
    q.add_argument("--validation-retries", type=int, default=2, help="per image, for invalid answers")
    q.add_argument("--backoff-base", type=float, default=1.0, help="seconds, doubled per retry")
    q.add_argument("--max-image-side", type=int, default=1536)
    q.add_argument("--price-in", type=float, default=0.0, help="per 1M prompt tokens (cost report)")
    q.add_argument("--price-out", type=float, default=0.0, help="per 1M completion tokens")
    q.add_argument("--keep-flagged", action="store_true", help="also write images whose caption was flagged")
    q.set_defaults(func=_caption)

    q = sub.add_parser("report", help="(re)write report.json / report.md for a data folder")
    q.add_argument("folder")
    q.set_defaults(func=_report)


def _finish(out: str) -> int:
    from lens.data.report import build_report

    build_report(out)
    print(f"report: {out}/report.md")
    return 0


def _ingest(args) -> int:
    from lens.data.ingest import ingest_config, run_ingest
    from lens.data.units import parse_shard

    config = ingest_config(args.out, fmt=args.format, quality=args.quality, max_pixels=args.max_pixels)
    run_ingest(
        args.inputs,
        config,
        per_shard=args.per_shard,
        path_column=args.path_column,
        text_column=args.text_column,
        shard=parse_shard(args.shard),
        workers=args.workers,
        executor=args.executor,
        overwrite=args.overwrite,
    )
    return _finish(args.out)


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _filter(args) -> int:
    from lens.data.filters.finalize import run_filter
    from lens.data.filters.runner import filter_config
    from lens.data.units import parse_shard

    extra = {
        k: v
        for k, v in (
            ("nsfw_labels", _split(args.nsfw_labels)),
            ("watermark_labels", _split(args.watermark_labels)),
        )
        if v
    }
    config = filter_config(
        args.out,
        stages=_split(args.stages),
        min_area=args.min_area,
        clarity_min=args.clarity_min,
        entropy_min=args.entropy_min,
        luma_low=args.luma_low,
        luma_high=args.luma_high,
        nsfw_model=args.nsfw_model,
        nsfw_max=args.nsfw_max,
        aesthetic_model=args.aesthetic_model,
        aesthetic_head=args.aesthetic_head,
        aesthetic_min=args.aesthetic_min,
        watermark_model=args.watermark_model,
        watermark_max=args.watermark_max,
        dedup_model=args.dedup_model,
        dedup_max=args.dedup_max,
        device=args.device,
        batch_size=args.batch_size,
        **extra,
    )
    run_filter(
        args.inputs,
        config,
        shard=parse_shard(args.shard),
        workers=args.workers,
        executor=args.executor,
        overwrite=args.overwrite,
    )
    return _finish(args.out)


def _caption(args) -> int:
    from lens.data.caption.client import CaptionSettings
    from lens.data.caption.run import make_openai_client, run_caption
    from lens.data.units import parse_shard

    settings = CaptionSettings(
        model=args.model,
        prompt=args.prompt,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        max_retries=args.max_retries,
        validation_retries=args.validation_retries,
        backoff_base=args.backoff_base,
        timeout=args.timeout,
        max_image_side=args.max_image_side,
        price_in=args.price_in,
        price_out=args.price_out,
    )
    client = make_openai_client(args.base_url, args.api_key_env, args.azure_api_version, args.timeout)
    summary = run_caption(
        args.inputs,
        args.out,
        settings,
        client,
        shard=parse_shard(args.shard),
        concurrency=args.concurrency,
        limit=args.limit,
        keep_flagged=args.keep_flagged,
        overwrite=args.overwrite,
    )
    print("caption:", ", ".join(f"{k}={v}" for k, v in sorted(summary.items())))
    return _finish(args.out)


def _report(args) -> int:
    return _finish(args.folder)
