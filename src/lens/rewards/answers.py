"""Reading a chat model's answers for the rubric judge: a list of rubrics, and one 1/0 per rubric.

Models asked for JSON answer in many near-JSON ways: fenced in ```json blocks, after a reasoning
block (`<think>`, Harmony's channels: lens.reasoner.harmony.answer_text), with prose around it, as
"1: yes" lines. Both readers accept all of those and return None for an answer they cannot read in
full, which the judge retries and finally counts as failed; neither raises.
"""

from __future__ import annotations

import json
import re

from lens.reasoner.harmony import answer_text

_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.DOTALL)
_ITEM = re.compile(r"^\s*(?:[-*•]|\d+\s*[.):]|q\d+\s*[.):])\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_VERDICT_LINE = re.compile(
    r"^\W*(?:q|question|rubric)?\s*#?(\d+)\W+?(yes|no|true|false|pass|fail|1|0)\b",
    re.IGNORECASE | re.MULTILINE,
)
_WORDS = {"1": 1, "yes": 1, "true": 1, "pass": 1, "0": 0, "no": 0, "false": 0, "fail": 0}


def _body(text: str | None) -> str:
    """The answer without reasoning blocks and code fences."""
    text = answer_text(text)
    fenced = _FENCE.search(text)
    return fenced.group(1).strip() if fenced else text


def _json(text: str):
    """The first JSON array or object in `text`, or None."""
    for start in (i for i, ch in enumerate(text) if ch in "[{"):
        try:
            return json.JSONDecoder().raw_decode(text[start:])[0]
        except ValueError:
            continue
    return None


def parse_rubrics(text: str | None, limit: int) -> list[str] | None:
    """Up to `limit` distinct non-empty rubric questions, or None if the answer holds none.

    Accepts a JSON array of strings, an object holding one ({"rubrics": [...]}), or a bulleted /
    numbered list.
    """
    body = _body(text)
    found = _json(body)
    if isinstance(found, dict):
        found = next((v for v in found.values() if isinstance(v, list)), None)
    items = [s for s in found if isinstance(s, str)] if isinstance(found, list) else _ITEM.findall(body)
    out: list[str] = []
    for item in items:
        item = re.sub(r"\s+", " ", item).strip().strip('"').strip()
        if item and item not in out:
            out.append(item)
    return out[:limit] or None


def _verdict(value) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    if isinstance(value, str):
        return _WORDS.get(value.strip().lower())
    if isinstance(value, dict):  # {"answer": 1, "reason": ...}
        return next(
            (v for k in ("answer", "verdict", "score", "pass") if (v := _verdict(value.get(k))) is not None),
            None,
        )
    return None


def parse_verdicts(text: str | None, n: int) -> tuple[list[int], bool]:
    """(one 1/0 per rubric, complete): rubrics the answer does not settle count 0 and make it incomplete.

    Accepts {"1": 1, "2": 0, ...} (keys numbered from 1), a JSON list of n answers, or lines such as
    "1: yes" / "2. 0". Values may be 1/0, true/false, yes/no or pass/fail.
    """
    body = _body(text)
    found = _json(body)
    if isinstance(found, dict) and not any(re.search(r"\d", str(k)) for k in found):
        found = next((v for v in found.values() if isinstance(v, (list, dict))), None)  # {"answers": ...}
    got: dict[int, int] = {}
    if isinstance(found, list) and len(found) == n:
        got = {i: v for i, x in enumerate(found, 1) if (v := _verdict(x)) is not None}
    elif isinstance(found, dict):
        for key, x in found.items():
            digits = re.search(r"\d+", str(key))
            if digits and (v := _verdict(x)) is not None:
                got[int(digits.group())] = v
    if not got:
        got = {int(i): _WORDS[w.lower()] for i, w in _VERDICT_LINE.findall(body)}
    verdicts = [got.get(i, 0) for i in range(1, n + 1)]
    return verdicts, all(i in got for i in range(1, n + 1))
