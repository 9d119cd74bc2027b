"""Training-free system-prompt search (REFERENCE 10): the paper's loop over the reasoner's instructions.

Each iteration, the prompt editor (an LLM, `lens.reasoner.editor`) reads the current system prompt,
its score and a summary of its failures, and proposes a new one. The candidate is scored as the
current one was (`lens.reasoner.scoring`: the reasoner rewrites every search prompt with it, the
generator draws the rewrites with the same seeds, Nano-Eval checks the images) and replaces the
current prompt only when it scores strictly higher. An editor call that fails or gives no usable
prompt keeps the current one and the loop goes on. At the end the initial and the best prompts are
scored on held-out prompts the search never saw (`split_prompts`), the honest measure of the gain.

The output folder holds `search.json` (the settings, every candidate with its system prompt, score,
per-tag scores and failure summary, one entry per iteration, the held-out scores) and
`best_system_prompt.txt`, for `lens generate --system-prompt-file`. Everything is saved as soon as
it is known, so a restart continues where a run stopped: a candidate scored once is never scored
again (the same text proposed twice reuses its score), and a proposal made before a crash is scored
rather than asked for again. `iterations` counts from the start of the folder, so rerunning with a
larger number extends a finished search. A folder resumes only with the settings that filled it
(`fingerprint`: the prompts, the generator, the reasoner, samples, seed, the initial prompt).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from lens.data.units import write_json_atomic
from lens.errors import LensError
from lens.reasoner.scoring import format_summary
from lens.world.geneval import TAGS

STATE, BEST = "search.json", "best_system_prompt.txt"
VERSION = 1

Score = Callable[[str], dict]  # system prompt -> `score_system_prompt`'s record


def split_prompts(
    prompts: Sequence[dict], held_out: float = 0.5, per_tag: int | None = None, seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """(search, held-out) prompts: per tag, a shuffle by `seed`, the `held_out` share set aside (at
    least one prompt of every tag that has two), each side cut to `per_tag` prompts per tag."""
    if not 0 <= held_out < 1:
        raise LensError(f"held_out must be in [0, 1), got {held_out}")
    if per_tag is not None and per_tag < 1:
        raise LensError(f"per_tag must be at least 1, got {per_tag}")
    by_tag: dict[str, list[dict]] = defaultdict(list)
    for md in prompts:
        by_tag[md["tag"]].append(md)
    rng, search, held = random.Random(seed), [], []
    for items in by_tag.values():
        items = list(items)
        rng.shuffle(items)
        n_held = min(max(round(len(items) * held_out), int(held_out > 0)), len(items) - 1)
        held += items[:n_held][:per_tag]
        search += items[n_held:][:per_tag]
    return search, held


def prompt_id(text: str) -> str:
    return hashlib.sha256(text.strip().encode()).hexdigest()[:12]


def prompts_id(prompts: Sequence[dict]) -> str:
    """One hash of a prompt list, for the fingerprint."""
    return hashlib.sha256(json.dumps(list(prompts), sort_keys=True).encode()).hexdigest()[:12]


class SearchState:
    """`search.json` in memory: candidates by id, iterations in order, the pending proposal."""

    def __init__(self, out_dir: str | Path, fingerprint: dict):
        self.dir = Path(out_dir)
        path = self.dir / STATE
        if not path.exists():
            self.data = {"version": VERSION, "fingerprint": fingerprint, "candidates": {}}
            self.data |= {"iterations": [], "held_out": {}}
            return
        try:
            self.data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise LensError(f"cannot read {path} ({err}); move it away to start a new search there") from err
        old = self.data.get("fingerprint", {})
        changed = sorted(k for k in old.keys() | fingerprint.keys() if old.get(k) != fingerprint.get(k))
        if changed:
            raise LensError(
                f"{self.dir} holds a search with other settings ({', '.join(changed)} differ); resume it "
                "with the same settings or pass another output folder"
            )

    @property
    def candidates(self) -> dict[str, dict]:
        return self.data["candidates"]

    @property
    def iterations(self) -> list[dict]:
        return self.data["iterations"]

    def save(self) -> None:
        write_json_atomic(self.dir / STATE, self.data)

    def scored(self, text: str, score: Score, origin: str, parent: str | None) -> tuple[dict, bool]:
        """(the candidate for `text`, whether it was scored before): scored and saved if new."""
        cid = prompt_id(text)
        if cid in self.candidates:
            return self.candidates[cid], True
        record = score(text)
        self.candidates[cid] = {
            "id": cid,
            "index": len(self.candidates),
            "origin": origin,
            "parent": parent,
            "system_prompt": text.strip(),
            **record,
            "summary_text": format_summary(record),
        }
        self.save()
        return self.candidates[cid], False

    def record(self, entry: dict) -> None:
        self.iterations.append(entry)
        self.data.pop("pending", None)
        best = self.candidates[entry["best"]]
        self.data["best"] = best["id"]
        self.save()
        (self.dir / BEST).write_text(best["system_prompt"] + "\n")


def search(
    out_dir: str | Path,
    initial: str,
    score: Score,
    editor,
    iterations: int,
    *,
    held_out: Score | None = None,
    fingerprint: dict | None = None,
    report: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) the search in `out_dir`; returns `search.json`'s content. `score` and
    `held_out` score a system prompt on the search and held-out prompts; `editor.propose(current,
    score, summary)` -> (candidate or None, why none). `report` gets the table, row by row."""
    if iterations < 0:
        raise LensError(f"iterations must be >= 0, got {iterations}")
    state = SearchState(out_dir, {**(fingerprint or {}), "initial": prompt_id(initial)})
    for line in table_header():
        report(line)
    first, _ = state.scored(initial, score, "initial", None)
    if not state.iterations:
        state.record({"iteration": 0, "candidate": first["id"], "best": first["id"], "outcome": "initial"})
    for entry in state.iterations:
        report(table_row(entry, state.candidates))
    while len(state.iterations) <= iterations:
        entry = _iterate(state, len(state.iterations), score, editor)
        state.record(entry)
        report(table_row(entry, state.candidates))
    best = state.candidates[state.data["best"]]
    if held_out is not None:
        for cid in dict.fromkeys((first["id"], best["id"])):
            if cid not in state.data["held_out"]:
                state.data["held_out"][cid] = held_out(state.candidates[cid]["system_prompt"])
                state.save()
        report(held_out_line(state.data["held_out"], first, best))
    return state.data


def _iterate(state: SearchState, it: int, score: Score, editor) -> dict:
    """One iteration: a proposal (the pending one after a restart), scored, kept if strictly better."""
    current = state.candidates[state.iterations[-1]["best"]]
    pending = state.data.get("pending")
    if pending and pending["iteration"] == it:
        text, why = pending["system_prompt"], ""
    else:
        text, why = editor.propose(current["system_prompt"], current["score"], current["summary_text"])
        if text is not None:
            state.data["pending"] = {"iteration": it, "system_prompt": text}
            state.save()
    if text is None:
        return {"iteration": it, "candidate": None, "best": current["id"], "outcome": why}
    cand, seen = state.scored(text, score, f"iteration {it}", current["id"])
    kept = cand["score"] > current["score"]
    outcome = ("kept" if kept else "rejected") + (f" (seen before, #{cand['index']})" if seen else "")
    best = cand["id"] if kept else current["id"]
    return {"iteration": it, "candidate": cand["id"], "best": best, "outcome": outcome}


def table_header() -> list[str]:
    head = ["iteration", "candidate", *TAGS, "score", "best", "outcome"]
    return ["| " + " | ".join(head) + " |", "| ---: | ---: |" + " ---: |" * (len(TAGS) + 2) + " --- |"]


def table_row(entry: dict, candidates: dict[str, dict]) -> str:
    """One iteration: the candidate's per-tag and overall scores, the best score so far, the outcome."""
    cand = candidates.get(entry["candidate"]) if entry["candidate"] else None
    if cand is None:
        cells = ["-", *("-" for _ in TAGS), "-"]
    else:
        tags = [f"{cand['scores'][t]:.3f}" if t in cand["scores"] else "-" for t in TAGS]
        cells = [f"#{cand['index']}", *tags, f"{cand['score']:.3f}"]
    best = candidates[entry["best"]]["score"]
    outcome = " ".join(entry["outcome"].split())[:120]
    return "| " + " | ".join([str(entry["iteration"]), *cells, f"{best:.3f}", outcome]) + " |"


def held_out_line(held: dict[str, dict], first: dict, best: dict) -> str:
    if first["id"] == best["id"]:
        return f"held-out: initial = best (#{best['index']}) {held[best['id']]['score']:.3f}"
    return (
        f"held-out: initial (#{first['index']}) {held[first['id']]['score']:.3f}, "
        f"best (#{best['index']}) {held[best['id']]['score']:.3f}"
    )
