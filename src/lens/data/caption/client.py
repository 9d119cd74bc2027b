"""One image -> one validated caption through any OpenAI-compatible chat-completions API.

Works with OpenAI, Azure OpenAI, and vLLM / SGLang serving a local VLM. Transport failures (429, 5xx,
timeouts, dropped connections, malformed bodies) are retried with exponential backoff and jitter,
honouring Retry-After / retry-after-ms; invalid answers (see validate.py) are retried a few times and
then flagged. Errors that no retry can fix (bad key, unknown model, no quota) raise LensError.
`ChatClient` is the transport half (retries, backoff, token accounting), shared with the rubric judge
(lens.rewards.judge); `CaptionClient` adds the caption prompt and its validation.
"""

from __future__ import annotations

import base64
import email.utils
import io
import random
import time
from dataclasses import dataclass, field

import openai
from PIL import Image

from lens.data.caption.prompts import WORD_LIMITS, get_prompt
from lens.data.caption.validate import check, clean
from lens.errors import LensError

_RETRYABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APIConnectionError,
    openai.APIResponseValidationError,
)


@dataclass
class ChatSettings:
    """The model, the sampling and how hard to try: what every user of ChatClient sets."""

    model: str
    max_tokens: int = 1024
    temperature: float = 0.2
    max_retries: int = 6  # transport failures per item before giving up until the next run
    validation_retries: int = 2  # invalid answers per item before flagging it
    backoff_base: float = 1.0  # seconds; doubles per retry, with jitter
    backoff_cap: float = 60.0
    retry_after_cap: float = 300.0
    timeout: float = 120.0
    max_image_side: int = 1536
    detail: str = "high"
    price_in: float = 0.0  # currency per 1M prompt tokens, for the cost estimate
    price_out: float = 0.0  # per 1M completion tokens


@dataclass
class CaptionSettings(ChatSettings):
    prompt: str = "dense"


@dataclass
class ChatResult:
    status: str = "failed"  # ok | flagged | failed
    reason: str | None = None
    attempts: int = 0
    failures: int = 0  # transport failures so far
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class CaptionResult(ChatResult):
    caption: str = ""


def image_url(data: bytes, max_side: int) -> str:
    """A JPEG data URL, downscaled to max_side (deterministic: the same image gives the same URL)."""
    return data_url(Image.open(io.BytesIO(data)), max_side, "JPEG")


def data_url(image: Image.Image, max_side: int, fmt: str) -> str:
    """An RGB JPEG or PNG data URL of `image`, downscaled to max_side."""
    im = image.convert("RGB")
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


def retry_after(err: Exception) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, Retry-After seconds or HTTP date)."""
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class ChatClient:
    """Chat completions through transport retries; `name` and `hint` word the errors no retry fixes."""

    name = "chat"
    hint = "check the model name, the base URL and the API key"

    def __init__(self, client, settings: ChatSettings, *, sleep=time.sleep, seed: int | None = None):
        self.client, self.s, self.sleep = client, settings, sleep
        self.rng = random.Random(seed)

    def backoff(self, failures: int, asked: float | None) -> float:
        if asked is not None:  # the server knows best; a little jitter keeps workers from stampeding
            return min(asked, self.s.retry_after_cap) * (1 + 0.1 * self.rng.random())
        d = min(self.s.backoff_cap, self.s.backoff_base * 2 ** (failures - 1))
        return d / 2 + self.rng.uniform(0, d / 2)  # "equal jitter"

    def send(self, res: ChatResult, messages: list[dict]) -> str | None:
        """One answer's text ("" if empty), retrying transport failures; None when `res` is settled.

        On None, `res.status` says why: "flagged" (a request no retry can fix) or "failed" (gave up
        after max_retries transport failures, counted over every send of the same `res`).
        """
        while True:
            res.attempts += 1
            try:
                resp = self.client.chat.completions.create(
                    model=self.s.model,
                    messages=messages,
                    max_completion_tokens=self.s.max_tokens,  # OpenAI reasoning models refuse max_tokens
                    temperature=self.s.temperature,
                    timeout=self.s.timeout,
                )
                text, finish = _extract(resp)
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as err:
                raise LensError(
                    f"the {self.name} API refused the request ({_describe(err)}); {self.hint}"
                ) from err
            except (openai.BadRequestError, openai.UnprocessableEntityError) as err:
                res.status, res.reason = "flagged", f"bad_request: {_describe(err)}"
                return None
            except (*_RETRYABLE, openai.APIStatusError, ValueError) as err:
                if getattr(err, "code", None) == "insufficient_quota":
                    raise LensError(
                        f"the {self.name} API account has no quota left; add credit or lower --concurrency"
                    ) from err
                if (
                    isinstance(err, openai.APIStatusError)
                    and not isinstance(err, _RETRYABLE)
                    and err.status_code not in (408, 409)
                ):
                    res.status, res.reason = "flagged", f"http_{err.status_code}: {_describe(err)}"
                    return None
                res.failures += 1
                res.errors.append(_describe(err))
                if res.failures > self.s.max_retries:
                    res.status, res.reason = (
                        "failed",
                        f"gave up after {res.failures} failures: {_describe(err)}",
                    )
                    return None  # never answered: not in a ledger, retried by the next run
                self.sleep(self.backoff(res.failures, retry_after(err)))
                continue
            usage = getattr(resp, "usage", None)
            res.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
            res.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
            res.finish_reason = finish
            return text or ""

    def cost(self, res: ChatResult) -> float:
        return (res.prompt_tokens * self.s.price_in + res.completion_tokens * self.s.price_out) / 1e6


class CaptionClient(ChatClient):
    name = "caption"
    hint = "check --model, --base-url and the API key"

    def __init__(self, client, settings: CaptionSettings, *, sleep=time.sleep, seed: int | None = None):
        super().__init__(client, settings, sleep=sleep, seed=seed)
        self.prompt = get_prompt(settings.prompt)
        self.min_words, self.max_words = WORD_LIMITS[settings.prompt]

    def messages(self, url: str) -> list[dict]:
        return [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": self.prompt},
                    {"type": "image_url", "image_url": {"url": url, "detail": self.s.detail}},
                ],
            }
        ]

    def caption(self, image: bytes) -> CaptionResult:
        res = CaptionResult(status="failed")
        try:
            messages = self.messages(image_url(image, self.s.max_image_side))
        except Exception as err:
            res.status, res.reason = "flagged", f"bad_image: {err}"
            return res
        invalid = 0
        while True:
            text = self.send(res, messages)
            if text is None:
                return res
            reason = check(
                text,
                res.finish_reason,
                min_words=self.min_words,
                max_words=self.max_words,
                sentence=self.s.prompt == "dense",
            )
            res.caption = clean(text)
            if reason is None:
                res.status, res.reason = "ok", None
                return res
            invalid += 1
            res.errors.append(reason)
            if invalid > self.s.validation_retries:
                res.status, res.reason = "flagged", reason
                return res


def _extract(resp) -> tuple[str | None, str | None]:
    """(content, finish_reason); a body that is not a chat completion raises ValueError (retried)."""
    choices = getattr(resp, "choices", None)
    if not choices:
        raise ValueError("malformed answer: no choices")
    choice = choices[0]
    message = getattr(choice, "message", None)
    if message is None:
        raise ValueError("malformed answer: no message")
    return message.content, getattr(choice, "finish_reason", None)


def _describe(err: Exception) -> str:
    status = getattr(err, "status_code", None)
    text = f"{type(err).__name__}" + (f" {status}" if status else "")
    return f"{text}: {str(err)[:160]}"
