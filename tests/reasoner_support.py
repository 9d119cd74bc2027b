"""Shared by the reasoner tests: a chat-completions server for text requests and the reasoner on it."""

from __future__ import annotations

import hashlib

import pytest

from lens.reasoner import ApiSettings, PromptReasoner
from tests.test_data_helpers import ChatServer, words

KEY_ENV = "LENS_TEST_REASONER_KEY"
PROMPT = "a red fox in fresh snow"


class ReasonerServer(ChatServer):
    """ChatServer for text requests: keyed by the user prompt, recording bodies and auth headers.

    Extra behaviours: 'harmony' (raw Harmony text in content), 'think' (a <think> block first).
    """

    def __init__(self, script=(), **kw):
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        super().__init__(script, **kw)

    @staticmethod
    def image_id(body: dict) -> str:
        return hashlib.sha1(body["messages"][-1]["content"].encode()).hexdigest()[:10]

    def answer(self, prompt: str) -> str:
        return words(self.caption_words, self.image_id({"messages": [{"content": prompt}]}))

    def handle(self, h, body):
        with self.lock:
            self.bodies.append(body)
            self.auth.append(h.headers.get("Authorization"))
            special = self.script[0] if self.script and self.script[0] in ("harmony", "think") else None
            if special:
                self.script.popleft()
                self.behaviours[special] += 1
        if special is None:
            return super().handle(h, body)
        final = self.answer(body["messages"][-1]["content"])
        content = (
            f"<|channel|>analysis<|message|>thinking<|end|><|start|>assistant<|channel|>final<|message|>{final}"
            if special == "harmony"
            else f"<think>thinking</think>\n{final}"
        )
        choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        self._send(
            h, 200, {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice]}
        )


@pytest.fixture
def server():
    s = ReasonerServer()
    yield s
    s.close()


@pytest.fixture
def api_reasoner(server, monkeypatch):
    """A reasoner on the local server with the key in $KEY_ENV and instant backoff (sleeps recorded)."""
    monkeypatch.setenv(KEY_ENV, "sk-test-reasoner")
    sleeps: list[float] = []

    def make(**kw) -> PromptReasoner:
        settings = {"timeout": 5.0, "max_retries": 2} | kw.pop("settings", {})
        reasoner = PromptReasoner(
            api=ApiSettings("chat-model", server.url, KEY_ENV, **settings), sleep=sleeps.append, **kw
        )
        reasoner.sleeps = sleeps
        return reasoner

    return make


@pytest.fixture(scope="module")
def pipe():
    from lens.testing import tiny_random_pipeline

    return tiny_random_pipeline(height=32, width=32)
