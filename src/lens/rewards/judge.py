"""A rubric judge as a reward, through any OpenAI-compatible vision chat API (OpenAI, Azure, vLLM, SGLang).

Per prompt, an LLM writes up to 10 yes/no rubrics once (lens.rewards.rubrics, cached on disk) and
the global structural-integrity rubric is added. Each image goes to the judge model as a base64 PNG
data URL with the numbered rubrics; the answer is read as one 1/0 per rubric (lens.rewards.answers)
and the score is the mean. An answer that does not settle every rubric is asked again, then the
rubrics it leaves open count as failed: a bad answer lowers one score, it never stops training.

Transport is the caption client's (lens.data.caption): the key from the environment variable named
by `api_key_env` (never a file), the SDK's retries off, whole-request timeouts, 429 / 5xx / timeouts /
malformed bodies retried with backoff and Retry-After. Requests run on `concurrency` threads. Every
answered image is appended to a ledger (`cache_dir/ledger/`, fsynced) keyed by (image pixels, prompt,
rubrics, judge model, judge prompt), so a restart or a repeated batch never pays twice. An image the
API never answers, after every retry, raises LensError once the rest of the batch is recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from lens.data.caption.client import ChatClient, ChatResult, ChatSettings, data_url
from lens.data.caption.ledger import Ledger
from lens.errors import LensError
from lens.rewards.adapter import check_batch
from lens.rewards.answers import parse_verdicts
from lens.rewards.rubrics import RubricBook

JUDGE_SYSTEM = """You grade an image generated for a text prompt against numbered yes/no questions. \
Look at the image carefully and answer each question strictly: 1 only if the image clearly satisfies \
it, 0 if it does not or you cannot tell. Reply with only a JSON object that maps every question \
number to 1 or 0, for example {"1": 1, "2": 0}."""

# settings read from the environment by from_env (keyword arguments win)
ENV = {
    "model": "LENS_JUDGE_MODEL",
    "rubric_model": "LENS_JUDGE_RUBRIC_MODEL",
    "base_url": "LENS_JUDGE_BASE_URL",
    "api_key_env": "LENS_JUDGE_API_KEY_ENV",
    "cache_dir": "LENS_JUDGE_CACHE",
}


@dataclass
class JudgeSettings(ChatSettings):
    temperature: float = 0.0
    max_image_side: int = 1024
    rubric_model: str | None = None  # the model that writes rubrics; None: the judge model
    base_url: str | None = None  # None: OpenAI's own
    api_key_env: str = "OPENAI_API_KEY"  # the NAME of the variable holding the key
    cache_dir: str = str(Path.home() / ".cache" / "lens" / "judge")
    concurrency: int = 8
    max_rubrics: int = 10


class JudgeClient(ChatClient):
    name = "judge"
    hint = "check the judge model, LENS_JUDGE_BASE_URL and the key variable (LENS_JUDGE_API_KEY_ENV)"


def image_hash(image: Image.Image) -> str:
    """A hash of the pixels (not of an encoding, which may change with Pillow)."""
    im = image.convert("RGB")
    return hashlib.sha256(f"{im.size}".encode() + im.tobytes()).hexdigest()


def questions(rubrics: list[str]) -> str:
    return "\n".join(f"{i}. {q}" for i, q in enumerate(rubrics, 1))


class JudgeReward:
    def __init__(self, settings: JudgeSettings, *, client=None, sleep=time.sleep):
        if settings.concurrency < 1:
            raise LensError(f"judge concurrency must be >= 1, got {settings.concurrency}")
        if client is None:
            from lens.data.caption.run import make_openai_client

            client = make_openai_client(settings.base_url, settings.api_key_env, None, settings.timeout)
        self.s = settings
        self.judge = JudgeClient(client, settings, sleep=sleep)
        writer = dataclasses.replace(settings, model=settings.rubric_model or settings.model)
        self.book = RubricBook(
            JudgeClient(client, writer, sleep=sleep),
            Path(settings.cache_dir).expanduser() / "rubrics",
            settings.max_rubrics,
        )
        self.ledger = Ledger(Path(settings.cache_dir).expanduser() / "ledger")
        # requests, rubric_requests, ok, flagged (answers counted as failed), from_ledger, cost_micro
        self.stats: Counter = Counter()

    @classmethod
    def from_env(cls, **kwargs) -> JudgeReward:
        """Settings from LENS_JUDGE_* variables (ENV), overridden by keyword arguments."""
        client, sleep = kwargs.pop("client", None), kwargs.pop("sleep", time.sleep)
        names = {f.name for f in dataclasses.fields(JudgeSettings)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise LensError(
                f"unknown judge setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        values = {k: os.environ[v] for k, v in ENV.items() if os.environ.get(v)} | kwargs
        if not values.get("model"):
            raise LensError(f"the judge reward needs a model: set ${ENV['model']} or pass model=...")
        return cls(JudgeSettings(**values), client=client, sleep=sleep)

    def __call__(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict | None]
    ) -> list[float]:
        check_batch(images, prompts, metadata)
        requests_before = self.book.requests
        with ThreadPoolExecutor(self.s.concurrency, thread_name_prefix="judge") as pool:
            unique = list(dict.fromkeys(prompts))
            rubrics = dict(zip(unique, pool.map(self.book.rubrics, unique)))
            keys = [self.key(im, p, rubrics[p]) for im, p in zip(images, prompts)]
            jobs = {k: (k, im, p, rubrics[p]) for k, im, p in zip(keys, images, prompts)}  # repeats once
            judged = dict(zip(jobs, pool.map(lambda job: self.judge_image(*job), jobs.values())))
        self.stats["rubric_requests"] += self.book.requests - requests_before
        results = [judged[k] for k in keys]
        failed = [r for r in judged.values() if isinstance(r, ChatResult)]
        for r in judged.values():
            if isinstance(r, ChatResult):
                self.stats["requests"] += r.attempts
            elif r.pop("from_ledger", False):
                self.stats["from_ledger"] += 1
            else:
                self.stats["requests"] += r["attempts"]
                self.stats[r["status"]] += 1
                self.stats["cost_micro"] += round(r["cost"] * 1e6)
        if failed:
            raise LensError(
                f"the judge API did not answer {len(failed)} of {len(images)} images ({failed[0].reason}); "
                "run again: the answered ones are in the ledger and are not paid again"
            )
        return [r["score"] for r in results]

    def key(self, image: Image.Image, prompt: str, rubrics: list[str]) -> str:
        text = json.dumps(
            [image_hash(image), prompt, rubrics, self.s.model, JUDGE_SYSTEM], ensure_ascii=False
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def messages(self, image: Image.Image, prompt: str, rubrics: list[str]) -> list[dict]:
        text = f"Prompt: {prompt}\n\nQuestions:\n{questions(rubrics)}"
        return [
            {"role": "system", "content": JUDGE_SYSTEM},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": text},
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": data_url(image, self.s.max_image_side, "PNG"),
                            "detail": self.s.detail,
                        },
                    },
                ],
            },
        ]

    def judge_image(self, key: str, image: Image.Image, prompt: str, rubrics: list[str]) -> dict | ChatResult:
        """The image's ledger record (from the ledger, or judged now); the ChatResult if never answered."""
        if key in self.ledger:
            return dict(self.ledger.done[key], from_ledger=True)
        res = ChatResult()
        messages = self.messages(image, prompt, rubrics)
        verdicts = [0] * len(rubrics)
        for _ in range(self.s.validation_retries + 1):
            text = self.judge.send(res, messages)
            if text is None:  # res.status: failed (never answered) or flagged (no retry can fix it)
                break
            verdicts, complete = parse_verdicts(text, len(rubrics))
            if complete:
                res.status, res.reason = "ok", None
                break
            res.status, res.reason = "flagged", f"unreadable answer: {text[:120]!r}"
        if res.status == "failed":
            return res
        record = {
            "key": key,
            "status": res.status,
            "score": sum(verdicts) / len(rubrics),
            "verdicts": verdicts,
            "prompt": prompt,  # the rubrics are in the rubric cache; the key covers them
            "reason": res.reason,
            "attempts": res.attempts,
            "prompt_tokens": res.prompt_tokens,
            "completion_tokens": res.completion_tokens,
            "cost": self.judge.cost(res),
            "model": self.s.model,
        }
        self.ledger.append(record)
        return record

    def close(self) -> None:
        self.ledger.close()

    def __repr__(self) -> str:
        return f"JudgeReward(model={self.s.model!r}, base_url={self.s.base_url!r})"
