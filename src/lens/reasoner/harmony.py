"""GPT-OSS's Harmony format on the generation side: the conversation to continue, and its final answer.

`lens.text.chat.HarmonyTemplate` renders what the text features were trained on (a fixed analysis,
an empty final turn). Generating is different: the conversation stops at `<|start|>assistant` and
the model writes its own turns, `<|channel|>analysis<|message|>...<|end|>` (its reasoning, not for
the user) and then `<|start|>assistant<|channel|>final<|message|>ANSWER<|return|>`. Only the final
channel is the rewritten prompt. The system header is the same as the template's except for the
reasoning effort, which the released reasoner sets to "low" (tests check the two headers agree).
"""

from __future__ import annotations

import datetime as dt
import re

REASONING_EFFORTS = ("low", "medium", "high")
# Tokens that end a Harmony message; generation stops at the first two (end of the whole answer).
STOP_TOKENS = ("<|return|>", "<|call|>")
_END_OF_MESSAGE = ("<|return|>", "<|end|>", "<|call|>", "<|start|>")

# `<|channel|>final`, possibly with a constraint (`<|constrain|>json`) or recipient, then the body.
_FINAL = re.compile(r"<\|channel\|>\s*final\b[^<]*(?:<\|constrain\|>[^<]*)?<\|message\|>")


def conversation(system: str, prompt: str, *, reasoning: str = "low", date: str | None = None) -> str:
    """The Harmony text the model continues: system header, developer instructions, user, assistant."""
    if reasoning not in REASONING_EFFORTS:
        raise ValueError(f"reasoning effort must be one of {REASONING_EFFORTS}, got {reasoning!r}")
    date = date or dt.date.today().isoformat()
    return (
        "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
        f"Knowledge cutoff: 2024-06\nCurrent date: {date}\n\nReasoning: {reasoning}\n\n"
        "# Valid channels: analysis, commentary, final. Channel must be included for every message."
        "<|end|>"
        f"<|start|>developer<|message|># Instructions\n\n{system}\n\n<|end|>"
        f"<|start|>user<|message|>{prompt}<|end|>"
        "<|start|>assistant"
    )


def final_channel(text: str) -> str | None:
    """The last final-channel message in generated Harmony text, stripped; None if there is none.

    The message ends at `<|return|>`, `<|end|>`, `<|call|>` or a new `<|start|>`; one cut short by the
    token limit runs to the end of the text (still the model's answer, only truncated). Analysis and
    commentary channels are never returned, so reasoning never leaks into the prompt.
    """
    matches = list(_FINAL.finditer(text))
    if not matches:
        return None
    body = text[matches[-1].end() :]
    cut = min((i for i in (body.find(t) for t in _END_OF_MESSAGE) if i >= 0), default=len(body))
    return body[:cut].strip()


def is_terminated(text: str) -> bool:
    """Whether the final message was closed (False: the token limit cut the answer short)."""
    matches = list(_FINAL.finditer(text))
    return bool(matches) and any(t in text[matches[-1].end() :] for t in _END_OF_MESSAGE)


_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)


def answer_text(content: str | None) -> str:
    """What an API answer says to the user: the final channel if the server passed raw Harmony through,
    without any `<think>...</think>` reasoning block (Qwen3-style servers); "" if nothing is left."""
    if not content:
        return ""
    if "<|channel|>" in content:
        return final_channel(content) or ""
    return _THINK.sub("", content).strip()
