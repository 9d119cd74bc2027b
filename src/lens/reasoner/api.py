"""The reasoner through any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, Ollama).

The client is the caption pipeline's (`lens.data.caption.run.make_openai_client`): the key comes from
the environment variable NAMED by `api_key_env` (never from a file or an argument, so it stays out of
shell history and configs), the SDK's own retries are off and every request is bounded as a whole by
`timeout` (a server that trickles bytes cannot hold a generation forever). Transport failures (429,
5xx, timeouts, dropped connections, malformed bodies) are retried as the caption client does them,
but fewer times: a person is waiting for an image. Anything that still fails raises `RewriteFailed`,
which `PromptReasoner` turns into "keep the original prompt" with a warning.

`openai` comes with the `data` extra and is imported inside functions only: `import lens.reasoner`
and the pipeline need no network client.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from lens.reasoner.harmony import answer_text

DEFAULT_KEY_ENV = "OPENAI_API_KEY"


class RewriteFailed(Exception):
    """One prompt could not be rewritten; the message says why (for the warning and `last_error`)."""


@dataclass
class ApiSettings:
    """Where the chat model is and how hard to try; sampling settings live on `PromptReasoner`."""

    model: str
    base_url: str | None = None  # None: OpenAI's own
    api_key_env: str = DEFAULT_KEY_ENV
    timeout: float = 120.0  # seconds per request as a whole; a 4096-token answer takes a while
    max_retries: int = 2  # transport failures per prompt before keeping the original prompt
    backoff_base: float = 1.0  # seconds, doubling per retry, with jitter
    backoff_cap: float = 8.0
    retry_after_cap: float = 30.0


class ApiRewriter:
    """One chat completion per prompt: system prompt + user prompt -> the answer's text."""

    def __init__(self, settings: ApiSettings, *, client=None, sleep=time.sleep, seed: int | None = None):
        if client is None:
            from lens.data.caption.run import make_openai_client  # imports openai (the `data` extra)

            client = make_openai_client(settings.base_url, settings.api_key_env, None, settings.timeout)
        self.s, self.client, self.sleep = settings, client, sleep
        self.rng = random.Random(seed)

    def backoff(self, failures: int, asked: float | None) -> float:
        """The caption client's policy: the server's Retry-After if given, else equal-jitter doubling."""
        if asked is not None:
            return min(asked, self.s.retry_after_cap) * (1 + 0.1 * self.rng.random())
        d = min(self.s.backoff_cap, self.s.backoff_base * 2 ** (failures - 1))
        return d / 2 + self.rng.uniform(0, d / 2)

    def request(self, system: str, prompt: str, temperature, reasoning_effort, max_tokens: int) -> dict:
        """The create() arguments. `max_completion_tokens` and `reasoning_effort` go in the body as
        written: the SDK's typed parameters for them are newer than the oldest openai the extra
        allows, and OpenAI's reasoning models refuse the older `max_tokens`. A None setting is left out
        (some servers refuse `reasoning_effort` for non-reasoning models, or a temperature)."""
        body = {"max_completion_tokens": max_tokens}
        if reasoning_effort is not None:
            body["reasoning_effort"] = reasoning_effort
        args = {
            "model": self.s.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
            "timeout": self.s.timeout,
            "extra_body": body,
        }
        if temperature is not None:
            args["temperature"] = temperature
        return args

    def rewrite(self, system: str, prompt: str, *, temperature, reasoning_effort, max_tokens: int) -> str:
        """The answer ("" if the model said nothing), or RewriteFailed; never an openai exception."""
        import openai

        from lens.data.caption.client import _RETRYABLE, _describe, _extract, retry_after

        args = self.request(system, prompt, temperature, reasoning_effort, max_tokens)
        failures = 0
        while True:
            try:
                text, _finish = _extract(self.client.chat.completions.create(**args))
                return answer_text(text)
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as err:
                raise RewriteFailed(
                    f"the reasoner API refused the request ({_describe(err)}): check the model name, the "
                    f"base URL and ${self.s.api_key_env}"
                ) from err
            except (openai.BadRequestError, openai.UnprocessableEntityError) as err:
                raise RewriteFailed(
                    f"the reasoner API rejected the request ({_describe(err)}); a model that refuses "
                    "temperature or reasoning_effort can be used with those settings set to None"
                ) from err
            except (*_RETRYABLE, openai.APIStatusError, ValueError) as err:
                status = getattr(err, "status_code", None)
                if (
                    isinstance(err, openai.APIStatusError)
                    and not isinstance(err, _RETRYABLE)
                    and status not in (408, 409)
                ):
                    raise RewriteFailed(f"the reasoner API failed: {_describe(err)}") from err
                failures += 1
                if failures > self.s.max_retries:
                    raise RewriteFailed(
                        f"the reasoner API failed {failures} times, last: {_describe(err)}"
                    ) from err
                self.sleep(self.backoff(failures, retry_after(err)))
