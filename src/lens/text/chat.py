"""Chat templates that wrap a user prompt the way the Lens text features were trained.

A template renders the full text fed to the LM and reports how many tokens precede the prompt's first
token. That prefix length is derived by tokenising, never hard-coded: the prompt is replaced by three
sentinels and the prefix must tokenise to the same ids every time and on its own, which holds
whenever the prefix ends at a token boundary (Harmony's ends with the `<|message|>` special).
`encode_prompts` re-checks this for every real prompt.

- `HarmonyTemplate`: GPT-OSS's Harmony layout, written out (REFERENCE 6). With the real tokenizer
  the prefix is 97 tokens for every date: o200k splits digits into groups of at most three and every
  1-3 digit group is a single token, so `YYYY-MM-DD` always costs 6 tokens.
- `HFChatTemplate`: any Hugging Face chat LM (Qwen3, Llama...) through `tokenizer.apply_chat_template`
  with the same system / user / assistant-analysis content, cut where the final answer would start.
"""

from __future__ import annotations

import datetime as dt
import re
from abc import ABC, abstractmethod
from typing import Any

from lens.errors import LensError

# What the released weights were trained on (REFERENCE 6).
SYSTEM_INSTRUCTION = (
    "Describe the image by detailing the color, shape, size, texture, quantity, text, "
    "spatial relationships of the objects and background."
)
ASSISTANT_ANALYSIS = "Need to generate one image according to the description."

# Prompt stand-ins starting lower-case, upper-case and with a digit: a prefix whose last token would
# merge with any of these (e.g. one ending in letters or a space) is caught by `prefix_ids`.
_SENTINELS = ("lens sentinel", "Zq Sentinel", "42 sentinel")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def validate_prompt(prompt: Any, allow_empty: bool = False) -> str:
    """The prompt itself, or LensError if it is not a string, or blank unless `allow_empty`.

    Blank prompts are refused by default (an empty caption is almost always a data bug); the pipeline
    allows them because the released one encodes an empty prompt like any other.
    """
    if not isinstance(prompt, str):
        raise LensError(
            f"prompts must be strings, got {type(prompt).__name__}: pass text such as 'a red cube'."
        )
    if not allow_empty and not prompt.strip():
        raise LensError("a prompt is empty or only whitespace: describe the image in words.")
    return prompt


def token_ids(tokenizer, text: str) -> list[int]:
    """Ids of `text` as the encoder feeds them: the rendering already holds any BOS/special tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


class ChatTemplate(ABC):
    """Wraps a prompt in a chat layout; `render(p) == prefix + p + suffix` for a prompt-free prefix."""

    @abstractmethod
    def render(self, prompt: str, *, allow_empty: bool = False) -> str:
        """The full text fed to the LM for `prompt` (validated; LensError if not a string, or blank
        unless `allow_empty`)."""

    def prefix_length(self, tokenizer) -> int:
        """Tokens before the prompt's first token, found by tokenising renderings with sentinels."""
        return len(self.prefix_ids(tokenizer))

    def prefix_text(self) -> str:
        """The characters every rendering starts with before the prompt."""
        renders = [self.render(s) for s in _SENTINELS]
        prefixes = {r[: r.index(s)] for r, s in zip(renders, _SENTINELS, strict=True)}
        if len(prefixes) != 1:
            raise LensError(f"{type(self).__name__} renders a prefix that depends on the prompt.")
        return prefixes.pop()

    def prefix_ids(self, tokenizer) -> list[int]:
        """The ids every rendering starts with before the prompt (see `prefix_length`)."""
        renders = [self.render(s) for s in _SENTINELS]
        prefix = token_ids(tokenizer, self.prefix_text())
        n = len(prefix)
        if any(token_ids(tokenizer, r)[:n] != prefix for r in renders):
            raise LensError(
                f"{type(self).__name__}'s prefix does not end at a token boundary with this tokenizer, "
                "so prompt tokens cannot be separated from it: use a template whose prefix ends with a "
                "special token or newline."
            )
        return prefix


class HarmonyTemplate(ChatTemplate):
    """GPT-OSS Harmony: system (date line), developer instructions, user, assistant analysis, final.

    `date` (a `datetime.date` or "YYYY-MM-DD") fills the "Current date" line; None uses today's
    date at render time, as the chat template of the released tokenizer does.
    """

    def __init__(
        self,
        date: dt.date | str | None = None,
        *,
        system: str = SYSTEM_INSTRUCTION,
        analysis: str = ASSISTANT_ANALYSIS,
    ) -> None:
        if isinstance(date, dt.date):
            date = date.isoformat()
        if date is not None and not (isinstance(date, str) and _DATE.fullmatch(date)):
            raise LensError(f"date must be a datetime.date or 'YYYY-MM-DD', got {date!r}.")
        self.date, self.system, self.analysis = date, system, analysis

    def render(self, prompt: str, *, allow_empty: bool = False) -> str:
        prompt = validate_prompt(prompt, allow_empty)
        date = self.date or dt.date.today().isoformat()
        return (
            "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
            f"Knowledge cutoff: 2024-06\nCurrent date: {date}\n\nReasoning: medium\n\n"
            "# Valid channels: analysis, commentary, final. Channel must be included for every message."
            "<|end|>"
            f"<|start|>developer<|message|># Instructions\n\n{self.system}\n\n<|end|>"
            f"<|start|>user<|message|>{prompt}<|end|>"
            f"<|start|>assistant<|channel|>analysis<|message|>{self.analysis}<|end|>"
            # The final turn is cut at `<|return|>`: its content is empty.
            "<|start|>assistant<|channel|>final<|message|>"
        )

    def __repr__(self) -> str:
        return f"HarmonyTemplate(date={self.date!r})"


class HFChatTemplate(ChatTemplate):
    """The tokenizer's own chat template, with Lens's system, user and assistant-analysis content.

    The assistant turn carries the analysis as `thinking` (GPT-OSS templates) and `reasoning_content`
    (Qwen3) and a sentinel as its final content; the rendering is cut where that content starts, i.e.
    an empty final answer with the end-of-turn marker removed.
    """

    _FINAL = "LensFinalAnswerSentinel"

    def __init__(
        self,
        tokenizer,
        *,
        system: str = SYSTEM_INSTRUCTION,
        analysis: str = ASSISTANT_ANALYSIS,
        chat_template_kwargs: dict | None = None,
    ) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise LensError(
                f"{type(tokenizer).__name__} has no chat template: load the LM's own tokenizer, or pass "
                "template=HarmonyTemplate() for GPT-OSS."
            )
        self.tokenizer, self.system, self.analysis = tokenizer, system, analysis
        self.chat_template_kwargs = dict(chat_template_kwargs or {})

    def render(self, prompt: str, *, allow_empty: bool = False) -> str:
        prompt = validate_prompt(prompt, allow_empty)
        assistant = {
            "role": "assistant",
            "content": self._FINAL,
            "thinking": self.analysis,
            "reasoning_content": self.analysis,
        }
        messages = [
            {"role": "system", "content": self.system},
            {"role": "user", "content": prompt},
            assistant,
        ]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, **self.chat_template_kwargs)
        cut = text.rfind(self._FINAL)
        if cut < 0:
            raise LensError(
                "the tokenizer's chat template dropped the assistant message: use another template."
            )
        return text[:cut]

    def __repr__(self) -> str:
        return f"HFChatTemplate({type(self.tokenizer).__name__})"


def default_template(text_encoder, tokenizer) -> ChatTemplate:
    """Harmony for GPT-OSS LMs (what Lens was trained with), the tokenizer's own template otherwise."""
    model_type = getattr(getattr(text_encoder, "config", None), "model_type", None)
    if model_type == "gpt_oss":
        return HarmonyTemplate(dt.date.today())  # one date for the whole batch, even across midnight
    return HFChatTemplate(tokenizer)
