"""One system prompt, scored: the reasoner rewrites each Nano-Eval prompt with it, a generator draws the
rewrites, the analyser checks every image, and the failures are summarised for the prompt editor.

Each prompt is rewritten once and drawn `n_samples` times from that rewrite (a rewrite is the
expensive call). The summary says which categories failed and which rules they broke (count, color,
position, exclude: `lens.eval.rules.verdicts`), with examples of prompt -> rewrite -> reason, and how
many rewrites failed. A failed rewrite keeps the request as it is, as the pipeline's reasoner does, so
it is drawn and scored like that.
"""

from __future__ import annotations

import copy
import time
from collections import Counter, defaultdict
from collections.abc import Sequence

from lens.eval.nano_eval import Generate, sample_results
from lens.eval.rules import summarize
from lens.reasoner.core import PromptReasoner
from lens.reasoner.prompts import system_prompt

EXAMPLE_CHARS = 300  # a rewrite quoted in the summary is cut here


def score_system_prompt(
    system: str,
    reasoner: PromptReasoner,
    generate: Generate,
    prompts: Sequence[dict],
    *,
    n_samples: int = 1,
    seed: int = 0,
    batch_size: int = 16,
    workers: int = 0,
    examples: int = 2,
    pipe=None,
) -> dict:
    """{"score" (Nano-Eval overall), "scores" (per tag), "rewrites" (the reasoner's outcome counts),
    "summary" (`summarize_failures`), "seconds"} for `system` as the reasoner's system prompt.
    `pipe` is what a local reasoner generates with; `reasoner` itself is left as it was."""
    t0 = time.perf_counter()
    rewriter = copy.copy(reasoner)
    rewriter.system, rewriter.stats, rewriter.last_error = system_prompt(system), Counter(), None
    texts = [rewriter.rewrite(md["prompt"], pipe) for md in prompts]
    results = sample_results(generate, prompts, texts, n_samples, seed, batch_size, workers=workers)
    scores = summarize(results)
    return {
        "score": scores["overall"],
        "scores": scores,
        "rewrites": dict(rewriter.stats),
        "last_error": rewriter.last_error,
        "summary": summarize_failures(results, examples),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def summarize_failures(results: Sequence[dict], examples: int = 2) -> dict:
    """Per tag: images, failed images and the kinds of rule they broke; and up to `examples` failed
    prompts per tag (one image each) with their rewrite and the analyser's reason."""
    tags: dict[str, dict] = defaultdict(lambda: {"images": 0, "failed": 0, "rules": Counter()})
    shown: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        tag = tags[r["tag"]]
        tag["images"] += 1
        if r["correct"]:
            continue
        tag["failed"] += 1
        tag["rules"].update(rule.split()[0] for rule in r["failed"])
        seen = {e["prompt"] for e in shown[r["tag"]]}
        if len(shown[r["tag"]]) < examples and r["prompt"] not in seen:
            shown[r["tag"]].append(
                {"prompt": r["prompt"], "rewrite": r["text"], "reason": r["reason"] or "the image is wrong"}
            )
    return {
        "tags": {t: {**v, "rules": dict(v["rules"].most_common())} for t, v in tags.items()},
        "examples": dict(shown),
    }


def format_summary(record: dict) -> str:
    """What the prompt editor reads about a scored system prompt: the failures, category by category."""
    summary, lines = (
        record["summary"],
        ["Failures by category (failed images / images: the rules they broke):"],
    )
    clean = []
    for tag, t in summary["tags"].items():
        if not t["failed"]:
            clean.append(tag)
            continue
        rules = ", ".join(f"{kind} x{n}" for kind, n in t["rules"].items())
        lines.append(f"- {tag}: {t['failed']}/{t['images']} ({rules})")
    if clean:
        lines.append(f"No failures in: {', '.join(clean)}.")
    shown = [(tag, e) for tag, es in summary["examples"].items() for e in es]
    if shown:
        lines += ["", "Examples (request -> rewrite -> why the image failed):"]
    for tag, e in shown:
        reason = "; ".join(e["reason"].splitlines())
        lines.append(f"- [{tag}] {_quote(e['prompt'])} -> {_quote(e['rewrite'])} -> {reason}")
    kept = record["rewrites"].get("failed", 0) + record["rewrites"].get("empty", 0)
    if kept:
        why = f" (last error: {record['last_error']})" if record.get("last_error") else ""
        lines += ["", f"{kept} rewrites failed or came back empty and kept the request as it was{why}."]
    return "\n".join(lines)


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return '"' + (text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 3] + "...") + '"'
