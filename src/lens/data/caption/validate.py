"""Checking a caption answer before paying for the next one: empty, refusal, truncated, too short/long.

`check` returns None for a usable caption, else the reason; the client retries such answers a few
times and then flags the image. `clean` turns an accepted answer into one training paragraph.
"""

from __future__ import annotations

import re

REFUSAL = re.compile(
    r"^\W*(i['’]?m sorry|i am sorry|sorry[,.!]|i apologi[sz]e|unfortunately,? i|as an ai|"
    r"i (?:can(?:no|['’])t|am unable to|['’]m unable to|won['’]t|will not) "
    r"(?:help|assist|describe|provide|comply|process|view|see|caption))",
    re.IGNORECASE,
)
PREAMBLE = re.compile(r"^\s*(?:\*\*)?(?:caption|description)\s*:\s*(?:\*\*)?\s*", re.IGNORECASE)
ENDS_SENTENCE = re.compile(r"[.!?…。！？]['\"”’)\]]*$")


def clean(text: str) -> str:
    """One paragraph: no 'Caption:' preamble, whitespace and newlines collapsed."""
    return re.sub(r"\s+", " ", PREAMBLE.sub("", text or "")).strip()


def check(
    text: str | None, finish_reason: str | None, *, min_words: int, max_words: int, sentence: bool
) -> str | None:
    """None if the answer is a usable caption, else 'empty' | 'refusal' | 'truncated' | 'too_short' | 'too_long'."""
    body = clean(text or "")
    if not body:
        return "empty"
    if REFUSAL.search(body):
        return "refusal"
    if finish_reason == "length" or (sentence and not ENDS_SENTENCE.search(body)):
        return "truncated"
    words = len(body.split())
    if words < min_words:
        return "too_short"
    if words > max_words:
        return "too_long"
    return None
