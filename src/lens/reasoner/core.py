"""`PromptReasoner`: a short request in, a dense caption out, or the request itself when that fails.

As released (REFERENCE 10): off by default; an OpenAI-compatible API, when configured, always takes
precedence; otherwise the pipeline's GPT-OSS generates locally; reasoning effort low, temperature
0.7, up to 4096 new tokens; an empty answer, or any failure, keeps the original prompt. A failure is
logged as a warning and counted in `stats`, never raised: a broken reasoner must not cost the image.
Configuration errors (an unknown system prompt, a missing API key for a remote endpoint) do raise,
when the reasoner is built.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from lens.errors import LensError
from lens.reasoner.api import DEFAULT_KEY_ENV, ApiRewriter, ApiSettings, RewriteFailed
from lens.reasoner.harmony import REASONING_EFFORTS
from lens.reasoner.prompts import system_prompt

log = logging.getLogger("lens.reasoner")


class PromptReasoner:
    """Rewrites prompts with a chat model: `api` (ApiSettings) if given, else the pipeline's GPT-OSS.

    Args:
        system: "general", "geneval" (GenEval-style object prompts) or your own instructions.
        api: where an OpenAI-compatible endpoint is; `PromptReasoner.from_api(...)` builds it.
        local: use the pipeline's text encoder when there is no API (False: API only, or nothing).
        temperature, reasoning_effort, max_new_tokens: the released settings by default; None for
            temperature or reasoning_effort leaves it out of API requests (temperature None or 0 is
            greedy locally).
        generate_kwargs: more arguments for the local `generate` (top_p, logits processors...).
        client, sleep: an openai client and a sleep function to use instead of the defaults (tests).

    `stats` counts outcomes per prompt: "api" / "local" (rewritten), "empty" and "failed" (kept the
    original prompt), "skipped" (blank prompts are never sent). `last_error` is the latest failure.
    """

    def __init__(
        self,
        system: str = "general",
        *,
        api: ApiSettings | None = None,
        local: bool = True,
        temperature: float | None = 0.7,
        reasoning_effort: str | None = "low",
        max_new_tokens: int = 4096,
        generate_kwargs: dict | None = None,
        client=None,
        sleep=time.sleep,
    ) -> None:
        if reasoning_effort is not None and reasoning_effort not in REASONING_EFFORTS:
            raise LensError(f"reasoning_effort must be one of {REASONING_EFFORTS} or None")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise LensError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        self.system = system_prompt(system)
        self.api = ApiRewriter(api, client=client, sleep=sleep) if api is not None else None
        self.local = local
        self.temperature, self.reasoning_effort = temperature, reasoning_effort
        self.max_new_tokens = max_new_tokens
        self.generate_kwargs = dict(generate_kwargs or {})
        self.stats: Counter = Counter()
        self.last_error: str | None = None

    @classmethod
    def from_api(
        cls,
        model: str,
        base_url: str | None = None,
        api_key_env: str = DEFAULT_KEY_ENV,
        *,
        timeout: float = 120.0,
        max_retries: int = 2,
        **kwargs,
    ) -> PromptReasoner:
        """A reasoner on an OpenAI-compatible endpoint; the key is read from $`api_key_env`
        (127.0.0.1 / localhost servers get a placeholder when it is unset)."""
        if not isinstance(model, str) or not model.strip():
            raise LensError("the reasoner API needs a model name, e.g. gpt-5.5 or openai/gpt-oss-20b")
        settings = ApiSettings(model, base_url, api_key_env, timeout=timeout, max_retries=max_retries)
        return cls(api=settings, **kwargs)

    @property
    def source(self) -> str:
        return "api" if self.api is not None else "local" if self.local else "none"

    def _backend(self, pipe):
        if self.api is not None:
            return self.api
        if not self.local:
            raise RewriteFailed("the reasoner has no API and local generation is off")
        if pipe is None:
            raise RewriteFailed("local rewriting needs a pipeline (pipe.enable_reasoner or pipe=...)")
        from lens.reasoner.local import LocalRewriter  # torch: only for the local path

        return LocalRewriter(
            getattr(pipe, "text_encoder", None),
            getattr(pipe, "tokenizer", None),
            device=getattr(pipe, "_execution_device", None),
            generate_kwargs=self.generate_kwargs,
        )

    def rewrite(self, prompt: str, pipe=None) -> str:
        """The rewritten prompt, or `prompt` itself (a blank one is returned untouched)."""
        if not isinstance(prompt, str) or not prompt.strip():
            self.stats["skipped"] += 1
            return prompt
        try:
            answer = self._backend(pipe).rewrite(
                self.system,
                prompt,
                temperature=self.temperature,
                reasoning_effort=self.reasoning_effort,
                max_tokens=self.max_new_tokens,
            )
        except Exception as err:  # never lose the image to the reasoner; the warning says why
            self.stats["failed"] += 1
            self.last_error = str(err) if isinstance(err, RewriteFailed) else f"{type(err).__name__}: {err}"
            log.warning("reasoner (%s) failed, keeping the original prompt: %s", self.source, self.last_error)
            return prompt
        if not answer.strip():
            self.stats["empty"] += 1
            log.warning("reasoner (%s) gave an empty answer, keeping the original prompt", self.source)
            return prompt
        self.stats[self.source] += 1
        return answer.strip()

    def __call__(self, prompt: str | list[str], pipe=None) -> str | list[str]:
        """One prompt or a list, rewritten one by one (each falls back on its own)."""
        if isinstance(prompt, str):
            return self.rewrite(prompt, pipe)
        return [self.rewrite(p, pipe) for p in prompt]

    def __repr__(self) -> str:
        where = f"api={self.api.s.model!r}@{self.api.s.base_url or 'openai'}" if self.api else self.source
        return f"PromptReasoner({where})"


def rewrite_for_pipeline(pipe, prompts: list[str] | None) -> list[str] | None:
    """What `LensPipeline.__call__` encodes: its reasoner's rewrite of `prompts` (None: embeddings were
    given, nothing to rewrite). Sets `pipe.rewritten_prompt` for the caller either way."""
    reasoner = getattr(pipe, "_reasoner", None)
    if reasoner is not None and prompts is not None:
        prompts = reasoner(list(prompts), pipe)
    pipe._rewritten_prompt = list(prompts) if prompts is not None else None
    return prompts
