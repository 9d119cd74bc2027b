"""`build_components`: the frozen Lens-Nano parts, trained from nothing, in the released folder layout.

    OUT/tokenizer/      PreTrainedTokenizerFast (byte-level BPE + Harmony specials)
    OUT/text_encoder/   LensGptOssEncoder (config.json + model.safetensors)
    OUT/vae/            AutoencoderKLFlux2 with fitted BatchNorm latent statistics
    OUT/nano_components.json   plan, measurements and the settings the denoiser must use
    OUT/vae_reconstructions_{64,128}.png   held-out originals over reconstructions

These are `LensPipeline`'s vae / text_encoder / tokenizer and the training engine's
`encoders.source`. Deterministic by (seed, plan) at a fixed thread count: the plan fixes every step
count, and the time budget only sets the plan (`plan_for_budget`). Each stage also has a deadline
(twice its share of the budget plus a grace minute); a stage cut short by it is flagged in the JSON.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from lens.errors import LensError
from lens.latents import LatentCodec
from lens.nano.corpus import VAL_START, captions, tokenizer_corpus, world_images
from lens.nano.latent_stats import comparison_image, fit_latent_stats, psnr, reconstruct
from lens.nano.lm import LMSpec, held_out_loss, nano_lm, train_lm
from lens.nano.tokenizer import DEFAULT_VOCAB, train_tokenizer
from lens.nano.vae import VAESpec, nano_vae, train_vae
from lens.text.chat import HarmonyTemplate, token_ids
from lens.text.encoder import encode_prompts

SUBFOLDERS = ("tokenizer", "text_encoder", "vae")
MANIFEST = "nano_components.json"
NATIVE_SIZES = (64, 128)
# Seconds per step on one thread of a busy 2-core CPU (batch 16); they turn a budget into step counts.
LM_SECONDS_PER_STEP = 1.2
VAE_SECONDS_PER_STEP = 0.3
LM_SHARE, VAE_SHARE = 0.3, 0.6  # the rest: data, tokenizer, statistics, evaluation, saving
GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class BuildPlan:
    """Everything that decides the built weights, besides the seed."""

    tokenizer_captions: int = 4000
    vocab_size: int = DEFAULT_VOCAB
    lm_steps: int = 300
    lm_batch: int = 16
    lm_lr: float = 3e-3
    vae_steps: int = 2400
    vae_batch: int = 16
    vae_lr: float = 3e-3
    kl_weight: float = 1e-4
    stats_images: int = 1024
    eval_images: int = 64
    held_out_captions: int = 256
    native_size: int = 128
    lm: LMSpec = field(default_factory=LMSpec)
    vae: VAESpec = field(default_factory=VAESpec)


def plan_for_budget(minutes: float, native_size: int = 128) -> BuildPlan:
    """The plan that fits `minutes` of 2-core CPU time (at least 2 steps per training stage)."""
    if not isinstance(minutes, (int, float)) or isinstance(minutes, bool) or not minutes > 0:
        raise LensError(f"the time budget must be a positive number of minutes, got {minutes!r}.")
    if native_size not in NATIVE_SIZES:
        raise LensError(f"native size must be one of {NATIVE_SIZES}, got {native_size}.")
    seconds = 60.0 * minutes
    return BuildPlan(
        tokenizer_captions=min(4000, max(64, int(200 * minutes))),
        lm_steps=max(2, int(seconds * LM_SHARE / LM_SECONDS_PER_STEP)),
        vae_steps=max(2, int(seconds * VAE_SHARE / VAE_SECONDS_PER_STEP)),
        stats_images=min(1024, max(16, int(64 * minutes))),
        eval_images=min(64, max(8, int(4 * minutes))),
        held_out_captions=min(256, max(16, int(16 * minutes))),
        native_size=native_size,
    )


def _check_out(out: Path) -> None:
    taken = [s for s in (*SUBFOLDERS, MANIFEST) if (out / s).exists()]
    if taken:
        raise LensError(f"{out} already holds {', '.join(taken)}: pick an empty folder or delete them first.")


def _mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 3)


def _text_stats(tok, lm, seed: int, plan: BuildPlan) -> dict:
    """Token counts of held-out captions and the template, feature scale per layer, encode time."""
    template = HarmonyTemplate("2026-01-01")
    prefix = template.prefix_length(tok)
    suffix = len(token_ids(tok, template.render("x"))) - prefix - 1
    held_out = captions(seed, VAL_START, max(64, 2 * plan.held_out_captions))
    counts = sorted(len(token_ids(tok, c)) for c in held_out)
    longest = prefix + counts[-1] + suffix
    layers = tuple(range(lm.config.num_hidden_layers))
    dense = max(held_out, key=len)
    start = time.perf_counter()
    feats, mask = encode_prompts(lm, tok, [dense], layers=layers)  # (1, S, L, D)
    encode_ms = 1000 * (time.perf_counter() - start)
    rms = feats[0][mask[0]].pow(2).mean(dim=(0, 2)).sqrt()  # (L,)
    return {
        "vocab_size": len(tok),
        "bpe_ids": tok.convert_tokens_to_ids("<|startoftext|>"),
        "prefix_tokens": prefix,
        "suffix_tokens": suffix,
        "caption_tokens": {"mean": round(sum(counts) / len(counts), 1), "max": counts[-1], "n": len(counts)},
        "longest_rendering_tokens": longest,
        "feature_rms_per_layer": [round(float(r), 3) for r in rms],
        "encode_longest_caption_ms": round(encode_ms, 1),
    }


@torch.no_grad()
def _vae_eval(vae, seed: int, plan: BuildPlan, out: Path) -> dict:
    """Held-out PSNR, normalised-latent moments and a comparison picture at each size; decode time."""
    codec, result = LatentCodec(vae), {}
    for size in NATIVE_SIZES:
        pixels = world_images(seed, VAL_START, plan.eval_images, size, size)
        recon = reconstruct(vae, pixels)
        result[f"psnr_{size}"] = round(float(psnr(pixels, recon).mean()), 2)
        z = codec.encode(pixels)  # (B, 128, h, w) with the statistics fitted at the native size
        result[f"normalised_latents_{size}"] = {
            "mean": round(float(z.mean()), 3),
            "var": round(float(z.var(dim=(0, 2, 3), unbiased=False).mean()), 3),
        }
        scale = 2 if size == 64 else 1
        comparison_image(pixels[:8], recon[:8], scale).save(out / f"vae_reconstructions_{size}.png")
    latents = codec.encode(world_images(seed, VAL_START, 1, plan.native_size, plan.native_size))
    start = time.perf_counter()
    codec.decode(latents)
    result["decode_native_ms"] = round(1000 * (time.perf_counter() - start), 1)
    return result


def build_components(
    out_dir: str | Path,
    *,
    seed: int = 0,
    plan: BuildPlan | None = None,
    minutes: float | None = None,
    log=print,
) -> dict:
    """Train tokenizer, LM and VAE by `plan` and write them under out_dir; returns the manifest (also
    written to out_dir/nano_components.json). No plan: `plan_for_budget(minutes or 20)`. Stage
    deadlines apply only when `minutes` is given."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise LensError(f"seed must be a non-negative int, got {seed!r}.")
    if plan is None:
        minutes = 20.0 if minutes is None else minutes
        plan = plan_for_budget(minutes)
    budget = None if minutes is None else 60.0 * minutes

    def deadline(share: float) -> float | None:
        return None if budget is None else time.monotonic() + 2 * share * budget + GRACE_SECONDS

    out = Path(out_dir)
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    times, t0 = {}, time.monotonic()
    log(f"[nano] plan: {plan}")

    tok = train_tokenizer(tokenizer_corpus(seed, plan.tokenizer_captions), plan.vocab_size)
    times["tokenizer"] = time.monotonic() - t0
    log(f"[nano] tokenizer: {len(tok)} ids ({times['tokenizer']:.0f} s)")

    lm = nano_lm(tok, plan.lm, seed)
    start_loss = held_out_loss(lm, tok, seed, n=plan.held_out_captions)
    lm_log = train_lm(
        lm,
        tok,
        seed=seed,
        steps=plan.lm_steps,
        batch_size=plan.lm_batch,
        lr=plan.lm_lr,
        deadline=deadline(LM_SHARE),
        log=lambda m: log(f"[nano] lm {m}"),
    )
    end_loss = held_out_loss(lm, tok, seed, n=plan.held_out_captions)
    times["lm"] = lm_log.seconds
    log(f"[nano] lm: held-out loss {start_loss:.3f} -> {end_loss:.3f} nats/token")

    vae = nano_vae(plan.vae, seed, sample_size=plan.native_size)
    vae_log = train_vae(
        vae,
        seed=seed,
        steps=plan.vae_steps,
        batch_size=plan.vae_batch,
        lr=plan.vae_lr,
        kl_weight=plan.kl_weight,
        deadline=deadline(VAE_SHARE),
        log=lambda m: log(f"[nano] vae {m}"),
    )
    times["vae"] = vae_log.seconds
    size, chunk = plan.native_size, 64
    batches = (
        world_images(seed, i, min(chunk, plan.stats_images - i), size, size)
        for i in range(0, plan.stats_images, chunk)
    )
    mean, var = fit_latent_stats(vae, batches)
    vae_eval = _vae_eval(vae, seed, plan, out)
    log(f"[nano] vae: held-out PSNR {vae_eval}")

    tok.save_pretrained(out / "tokenizer")
    lm.save_pretrained(out / "text_encoder")
    vae.save_pretrained(out / "vae")
    text = _text_stats(tok, lm, seed, plan)
    times["total"] = time.monotonic() - t0
    manifest = {
        "seed": seed,
        "threads": torch.get_num_threads(),
        "plan": asdict(plan),
        "tokenizer": text,
        "text_encoder": {
            "params": sum(p.numel() for p in lm.parameters()),
            "held_out_loss_before": round(start_loss, 4),
            "held_out_loss_after": round(end_loss, 4),
            "train": lm_log.as_dict(),
        },
        "vae": {
            "params": sum(p.numel() for p in vae.parameters()),
            **vae_eval,
            "latent_var_range": [round(float(var.min()), 4), round(float(var.max()), 4)],
            "latent_mean_abs_max": round(float(mean.abs().max()), 4),
            "train": vae_log.as_dict(),
        },
        "sizes_mb": {s: _mb(out / s) for s in SUBFOLDERS},
        "seconds": {k: round(v, 1) for k, v in times.items()},
        # What a denoiser trained on these components must be configured with.
        "denoiser_settings": {
            "enc_hidden_dim": lm.config.hidden_size,
            "selected_layer_index": list(range(lm.config.num_hidden_layers)),
            "max_text_tokens": int(math.ceil(text["longest_rendering_tokens"] * 1.25 / 32) * 32),
            "native_size": plan.native_size,
        },
    }
    serialised = json.dumps(manifest, indent=2)
    (out / MANIFEST).write_text(serialised + "\n")
    log(f"[nano] wrote {out} in {times['total']:.0f} s")
    return json.loads(serialised)  # the JSON form (tuples become lists), as a reader of the file sees it


def small_plan(**overrides) -> BuildPlan:
    """A seconds-long plan (tiny models, few steps) for tests and smoke runs."""
    plan = BuildPlan(
        tokenizer_captions=48,
        vocab_size=800,
        lm_steps=3,
        lm_batch=4,
        vae_steps=3,
        vae_batch=4,
        stats_images=16,
        eval_images=8,
        held_out_captions=8,
        native_size=64,
        lm=LMSpec(layers=2, hidden=32, heads=2, kv_heads=1, expert_hidden=32),
        vae=VAESpec(block_out_channels=(8, 8, 8, 8)),
    )
    return replace(plan, **overrides)
