"""`report.json` + `report.md` for a data folder and the steps upstream of it.

Follows `provenance.json` from the given folder back to the ingest folder, sums every
`<unit>.stats.json` per step, reads the caption ledger for statuses, tokens, cost and caption lengths,
and draws `caption_lengths.png` plus one contact sheet per filter outcome (`examples_<stage>.png`).
Works on partial results, so any `--shard i/N` job can refresh it; the last one to finish sees all.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

from PIL import Image

from lens.data.units import write_json_atomic

BIN_WORDS = 25
MAX_BINS = 20  # the last bin holds >= 475 words


def _chain(folder: Path) -> list[Path]:
    chain, seen = [folder], {folder.resolve()}
    while True:
        prov = chain[-1] / "provenance.json"
        if not prov.is_file():
            break
        inputs = json.loads(prov.read_text()).get("inputs") or []
        up = Path(inputs[0]) if inputs else None
        if up is None or not (up / "provenance.json").is_file() or up.resolve() in seen:
            break
        chain.append(up)
        seen.add(up.resolve())
    return chain[::-1]


def _step(folder: Path) -> dict:
    prov_file = folder / "provenance.json"
    prov = json.loads(prov_file.read_text()) if prov_file.is_file() else {}
    counts, stages, errors, units = Counter(), {}, [], 0
    for f in sorted(folder.glob("*.stats.json")):
        s = json.loads(f.read_text())
        units += 1
        counts.update(s.get("counts", {}))
        for name, c in s.get("stages", {}).items():
            stages.setdefault(name, Counter()).update(c)
        errors += s.get("errors", [])[: max(0, 10 - len(errors))]
    step = {"command": prov.get("command", "?"), "dir": str(folder), "units": units, "counts": dict(counts)}
    config = prov.get("config", {})
    if step["command"] == "filter":
        step["stages"] = {n: dict(stages[n]) for n in config.get("active", stages) if n in stages}
        step["skipped"] = config.get("skipped", {})
    if errors:
        step["error_examples"] = errors
    if (folder / "ledger").is_dir():
        step["captions"] = _ledger_summary(folder / "ledger")
    return step


def _ledger_summary(ledger_dir: Path) -> dict:
    recs: dict[str, dict] = {}
    for f in sorted(ledger_dir.glob("ledger-*.jsonl")):
        for line in f.read_bytes().splitlines():
            try:
                rec = json.loads(line)
                recs[rec["key"]] = rec
            except (ValueError, KeyError, TypeError):
                continue
    words = [len(r["caption"].split()) for r in recs.values() if r.get("status") == "ok"]
    hist = Counter(min(w // BIN_WORDS, MAX_BINS - 1) for w in words)
    return {
        "images": len(recs),
        "status": dict(Counter(r.get("status") for r in recs.values())),
        "flag_reasons": dict(Counter(r.get("reason") for r in recs.values() if r.get("status") == "flagged")),
        "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in recs.values()),
        "completion_tokens": sum(r.get("completion_tokens", 0) for r in recs.values()),
        "cost": round(sum(r.get("cost", 0.0) for r in recs.values()), 6),
        "words_mean": round(statistics.fmean(words), 1) if words else None,
        "words_median": statistics.median(words) if words else None,
        "words_hist": {
            f"{b * BIN_WORDS}-{(b + 1) * BIN_WORDS - 1}": hist[b] for b in range(MAX_BINS) if hist[b]
        },
    }


def build_report(folder: str | Path) -> dict:
    """Write report.json, report.md and PNGs into `folder`; return the report dict."""
    folder = Path(folder)
    report = {"folder": str(folder), "steps": [_step(f) for f in _chain(folder)]}
    pictures = []
    caps = next((s["captions"] for s in report["steps"] if "captions" in s), None)
    if caps and caps["words_hist"]:
        _histogram(caps["words_hist"], folder / "caption_lengths.png")
        pictures.append("caption_lengths.png")
    for step in report["steps"]:
        examples = Path(step["dir"]) / "examples"
        for outcome in sorted(p.name for p in examples.glob("*") if p.is_dir()):
            name = f"examples_{outcome}.png"
            if _contact_sheet(sorted((examples / outcome).glob("*.png"))[:8], folder / name):
                pictures.append(name)
    report["pictures"] = pictures
    write_json_atomic(folder / "report.json", report)
    (folder / "report.md").write_text(_markdown(report))
    return report


def _histogram(hist: dict[str, int], path: Path) -> None:
    """Captions per word-count bin, every bin from 0 to the last (`MAX_BINS * BIN_WORDS`+) in order."""
    from lens.plots import bar_chart

    groups = [str(b * BIN_WORDS) for b in range(MAX_BINS - 1)] + [f"{(MAX_BINS - 1) * BIN_WORDS}+"]
    values = {
        (g, "captions"): float(hist.get(f"{b * BIN_WORDS}-{(b + 1) * BIN_WORDS - 1}", 0))
        for b, g in enumerate(groups)
    }
    title = f"caption length (words, bins of {BIN_WORDS}), max bin {max(hist.values())}"
    bar_chart(path, groups, ["captions"], values, title, "captions", label=None, group_px=30)


def _contact_sheet(files: list[Path], path: Path) -> bool:
    if not files:
        return False
    cell = 160
    sheet = Image.new("RGB", (cell * len(files), cell), "white")
    for i, f in enumerate(files):
        with Image.open(f) as im:
            sheet.paste(im.convert("RGB"), (i * cell, 0))
    sheet.save(path)
    return True


def _markdown(report: dict) -> str:
    lines = [f"# Data report: {report['folder']}", ""]
    for step in report["steps"]:
        lines += [f"## {step['command']} -> {step['dir']} ({step['units']} shards)", ""]
        lines += ["| counter | images |", "| --- | ---: |"] + [
            f"| {k} | {v} |" for k, v in sorted(step["counts"].items())
        ]
        if "stages" in step:
            lines += [
                "",
                "| stage | seen | dropped | dropped % | unscored |",
                "| --- | ---: | ---: | ---: | ---: |",
            ]
            for name, c in step["stages"].items():
                seen, dropped = c.get("seen", 0), c.get("dropped", 0)
                pct = f"{100 * dropped / seen:.1f}" if seen else "-"
                lines.append(f"| {name} | {seen} | {dropped} | {pct} | {c.get('unscored', 0)} |")
            lines += [f"- skipped `{n}`: {why}" for n, why in step.get("skipped", {}).items()]
        if "captions" in step:
            c = step["captions"]
            lines += [
                "",
                f"Captions: {c['images']} images, status {c['status']}, flagged {c['flag_reasons']}.",
            ]
            lines += [f"Tokens: {c['prompt_tokens']} in, {c['completion_tokens']} out; cost {c['cost']}."]
            lines += [
                f"Words: mean {c['words_mean']}, median {c['words_median']}.",
                "",
                "| words | captions |",
                "| --- | ---: |",
            ]
            lines += [f"| {k} | {v} |" for k, v in c["words_hist"].items()]
        lines.append("")
    lines += [f"![{p}]({p})" for p in report["pictures"]]
    return "\n".join(lines) + "\n"
