"""Per-prompt rubrics for the judge: written once by an LLM, cached on disk, plus one global rubric.

A prompt's rubrics are up to `max_rubrics` yes/no questions that a faithful image must pass (objects,
counts, colours, attributes, relations, text, style), asked of a text chat model with RUBRIC_SYSTEM.
They are kept in `cache_dir/<key>.json`, the key a hash of (prompt, model, system prompt), so every
later batch, run or restart reuses them without a request; a different model or system prompt writes
rubrics of its own. STRUCTURE, the structural-integrity question, is asked of every image after the
prompt's own. An answer that holds no rubrics is asked again; after `validation_retries` more the
prompt is judged on one generic question this time (not cached, so a later call asks again).
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from pathlib import Path

from lens.data.caption.client import ChatClient, ChatResult
from lens.data.units import write_json_atomic
from lens.errors import LensError
from lens.rewards.answers import parse_rubrics

RUBRIC_SYSTEM = """You write the grading rubric for a text-to-image prompt. List at most {n} short \
yes/no questions that an image faithful to the prompt must all pass: one per object, count, colour, \
attribute, spatial relation, action, visible text and style that the prompt asks for, most important \
first. Each question must be answerable by looking at the image alone, and "yes" must mean the image \
follows the prompt. Ask only about what the prompt states; do not ask about image quality. Reply with \
a JSON array of strings and nothing else."""

STRUCTURE = (
    "Is the image structurally sound: every object, body and piece of text in it whole and coherent, "
    "with no malformed, fused, duplicated or broken shapes, limbs, faces or letters?"
)


def fallback(prompt: str) -> list[str]:
    return [f"Does the image faithfully show: {prompt}?"]


class RubricBook:
    """Rubrics per prompt through `chat` (its model writes them), cached under `cache_dir`."""

    def __init__(self, chat: ChatClient, cache_dir: str | Path, max_rubrics: int = 10):
        if not 1 <= max_rubrics <= 10:
            raise LensError(f"max_rubrics must be 1 to 10, got {max_rubrics}")
        self.chat, self.dir, self.max = chat, Path(cache_dir), max_rubrics
        self.system = RUBRIC_SYSTEM.format(n=max_rubrics)
        self.requests = 0  # chat requests made, across threads
        self._lock = threading.Lock()

    def key(self, prompt: str) -> str:
        text = json.dumps([prompt, self.chat.s.model, self.system], ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def cached(self, prompt: str) -> list[str] | None:
        path = self.dir / f"{self.key(prompt)}.json"
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            rubrics = entry["rubrics"]
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return None  # a damaged file is rewritten by the next request
        return rubrics if entry.get("prompt") == prompt and rubrics else None

    def rubrics(self, prompt: str) -> list[str]:
        """The prompt's own rubrics and STRUCTURE last; a request only when they are not cached."""
        found = self.cached(prompt)
        if found is None:
            found = self.write(prompt)
        return [*found, STRUCTURE]

    def write(self, prompt: str) -> list[str]:
        res = ChatResult()
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": prompt}]
        try:
            for _ in range(self.chat.s.validation_retries + 1):
                text = self.chat.send(res, messages)
                if text is None:
                    raise LensError(
                        f"the judge could not get rubrics for {prompt!r} ({res.reason}); check the API "
                        "and run again: the answers already paid for are kept"
                    )
                found = parse_rubrics(text, self.max)
                if found:
                    entry = {"prompt": prompt, "model": self.chat.s.model, "rubrics": found}
                    write_json_atomic(self.dir / f"{self.key(prompt)}.json", entry)
                    return found
        finally:
            with self._lock:
                self.requests += res.attempts
        warnings.warn(
            f"the rubric model gave no readable rubrics for {prompt!r}; judging it on one generic question",
            stacklevel=2,
        )
        return fallback(prompt)
