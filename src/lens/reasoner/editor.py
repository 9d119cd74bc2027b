"""The prompt editor: an LLM that rewrites the reasoner's system prompt from a summary of its failures.

Any OpenAI-compatible chat-completions endpoint, through the caption client's transport
(`lens.data.caption.client.ChatClient`: retries of 429 / 5xx / timeouts / malformed bodies with
backoff, the key from the environment variable named by `api_key_env`). It gets the current system
prompt, its score and the failure summary, and answers with a new system prompt between
`<system_prompt>` tags. `propose` never raises for a failed or unusable answer: it returns no
candidate and says why, and the search keeps the current prompt. Errors no retry fixes (a wrong key,
model or URL) do raise, as LensError.

`openai` (the `data` extra) is imported when an editor is built, not with this module.
"""

from __future__ import annotations

import re
import time

from lens.reasoner.api import ApiSettings
from lens.reasoner.harmony import answer_text

EDITOR_SYSTEM = """You improve the system prompt of a prompt rewriter for a text-to-image model. \
The rewriter is a chat model: it reads the system prompt and a user's short image request, and \
writes the caption the image model draws. Every image is then checked automatically for exactly the \
objects, counts, colours and positions the request asks for.
You get the current system prompt, its score (the share of correct images, 0 to 1) and a summary of \
the failures by category, with examples of request -> rewrite -> why the image failed.
Write an improved system prompt that removes the causes of these failures and keeps what already \
works. It must stay general: it is used for every request, so do not quote or special-case the \
examples. Keep it a set of clear instructions to the rewriter, under 400 words.
Answer with the new system prompt only, between <system_prompt> and </system_prompt>."""

_TAGGED = re.compile(r"<system_prompt>(.*?)</system_prompt>", re.DOTALL)


def editor_messages(current: str, score: float, summary: str) -> list[dict]:
    """The chat the editor answers: its instructions, then the current prompt, score and failures."""
    user = (
        f"Current system prompt:\n<system_prompt>\n{current}\n</system_prompt>\n\n"
        f"Score: {score:.3f}\n\n{summary}"
    )
    return [{"role": "system", "content": EDITOR_SYSTEM}, {"role": "user", "content": user}]


def extract_prompt(answer: str | None) -> str | None:
    """The system prompt in an editor's answer (the last tagged block; reasoning blocks dropped), or
    None when it has no complete, non-empty `<system_prompt>` block (a cut-off answer has none)."""
    blocks = [b.strip() for b in _TAGGED.findall(answer_text(answer))]
    return blocks[-1] if blocks and blocks[-1] else None


class PromptEditor:
    """`propose(current, score, summary)` -> (new system prompt, "") or (None, why there is none)."""

    def __init__(
        self,
        settings: ApiSettings,
        *,
        temperature: float = 0.7,
        max_tokens: int = 4096,
        client=None,
        sleep=time.sleep,
    ):
        from lens.data.caption.client import ChatClient, ChatSettings  # openai: the `data` extra

        if client is None:
            from lens.data.caption.run import make_openai_client

            client = make_openai_client(settings.base_url, settings.api_key_env, None, settings.timeout)
        chat = ChatSettings(
            settings.model,
            max_tokens=max_tokens,
            temperature=temperature,
            max_retries=settings.max_retries,
            backoff_base=settings.backoff_base,
            backoff_cap=settings.backoff_cap,
            retry_after_cap=settings.retry_after_cap,
            timeout=settings.timeout,
        )
        self.chat = ChatClient(client, chat, sleep=sleep)
        self.chat.name = "prompt editor"
        self.chat.hint = f"check --editor-model, --editor-base and ${settings.api_key_env}"

    def propose(self, current: str, score: float, summary: str) -> tuple[str | None, str]:
        from lens.data.caption.client import ChatResult

        res = ChatResult()
        answer = self.chat.send(res, editor_messages(current, score, summary))
        if answer is None:
            return None, f"editor failed: {res.reason}"
        candidate = extract_prompt(answer)
        if candidate is None:
            return None, "editor answer had no <system_prompt> block"
        if candidate == current.strip():
            return None, "editor returned the current prompt"
        return candidate, ""
