"""The prompt reasoner: Harmony parsing, the API path against a real local server (failures included),
the local path on a tiny random GPT-OSS (the pipeline hook and `lens generate`: test_reasoner_pipeline.py)."""

from __future__ import annotations

import logging
import time

import pytest
import torch

from lens.errors import LensError
from lens.reasoner import ApiSettings, PromptReasoner
from lens.reasoner.api import ApiRewriter
from lens.reasoner.harmony import answer_text, conversation, final_channel, is_terminated
from lens.reasoner.local import LocalRewriter, can_generate
from lens.reasoner.prompts import GENERAL, GENEVAL, system_prompt
from lens.text.chat import SYSTEM_INSTRUCTION, HarmonyTemplate
from tests.reasoner_support import KEY_ENV, PROMPT, ReasonerServer, api_reasoner, pipe, server  # noqa: F401
from tests.test_data_helpers import TrickleServer

# ---------------------------------------------------------------- Harmony, hand-written


def test_final_channel_is_parsed_out_of_analysis_and_final():
    text = (
        "<|channel|>analysis<|message|>User wants a fox. Be dense.<|end|>"
        "<|start|>assistant<|channel|>final<|message|> A red fox stands in deep white snow. <|return|>"
    )
    assert final_channel(text) == "A red fox stands in deep white snow."
    assert is_terminated(text)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<|channel|>analysis<|message|>only thinking<|end|>", None),  # no final channel
        ("no harmony at all", None),
        ("<|channel|>final<|message|>cut short by the tok", "cut short by the tok"),  # token limit
        ("<|channel|>final <|constrain|>text<|message|>constrained<|return|>", "constrained"),
        (
            "<|channel|>final<|message|>first<|end|><|start|>assistant<|channel|>final<|message|>last<|return|>",
            "last",
        ),
        (
            "<|channel|>commentary<|message|>tool talk<|end|><|start|>assistant<|channel|>final<|message|>ok<|call|>",
            "ok",
        ),
        ("<|channel|>final<|message|><|return|>", ""),  # an empty answer: the reasoner keeps the prompt
    ],
)
def test_final_channel_edge_cases(text, expected):
    assert final_channel(text) == expected


def test_truncated_final_is_not_terminated():
    assert not is_terminated("<|channel|>final<|message|>a red")
    assert not is_terminated("<|channel|>analysis<|message|>x<|end|>")


def test_api_answers_lose_reasoning_blocks():
    assert answer_text("<think>\nthe user wants</think>\n\nA fox.") == "A fox."
    assert (
        answer_text(
            "<|channel|>analysis<|message|>x<|end|><|start|>assistant<|channel|>final<|message|>A fox."
        )
        == "A fox."
    )
    assert answer_text("<|channel|>analysis<|message|>only x") == ""
    assert answer_text(None) == "" and answer_text("  plain  ") == "plain"


def test_conversation_header_is_the_templates_but_for_the_effort():
    """The generation side and the trained template must not drift apart (only the effort differs)."""
    rendered = HarmonyTemplate("2025-01-02").render("x")
    head = rendered[: rendered.index("<|start|>assistant")] + "<|start|>assistant"
    assert conversation(SYSTEM_INSTRUCTION, "x", reasoning="medium", date="2025-01-02") == head
    low = conversation("SYS", "x", date="2025-01-02")
    assert (
        "Reasoning: low" in low and "# Instructions\n\nSYS\n\n" in low and low.endswith("<|start|>assistant")
    )


# ---------------------------------------------------------------- system prompts


def test_system_prompts_state_the_papers_rules():
    for text in (GENERAL, GENEVAL):
        lowered = text.lower()
        for rule in ("colour", "count", "double quotes", "same language", "left"):
            assert rule in lowered, rule
    assert "exactly" in GENEVAL and system_prompt("geneval") is GENEVAL
    assert system_prompt("Rewrite it densely, please.") == "Rewrite it densely, please."
    with pytest.raises(LensError, match="general"):
        system_prompt("genevall")


# ---------------------------------------------------------------- the API path, real local server


def test_api_rewrites_with_the_released_settings_and_the_env_key(server, api_reasoner):
    reasoner = api_reasoner()
    assert reasoner.rewrite(PROMPT) == server.answer(PROMPT)
    body = server.bodies[-1]
    assert body["model"] == "chat-model" and body["temperature"] == 0.7
    assert body["reasoning_effort"] == "low" and body["max_completion_tokens"] == 4096
    assert body["messages"] == [{"role": "system", "content": GENERAL}, {"role": "user", "content": PROMPT}]
    assert server.auth[-1] == "Bearer sk-test-reasoner"
    assert reasoner.stats["api"] == 1 and reasoner.last_error is None


def test_api_settings_can_be_left_out_and_the_geneval_prompt_chosen(server, api_reasoner):
    reasoner = api_reasoner(system="geneval", temperature=None, reasoning_effort=None, max_new_tokens=64)
    reasoner.rewrite("a photo of two cats")
    body = server.bodies[-1]
    assert (
        "temperature" not in body and "reasoning_effort" not in body and body["max_completion_tokens"] == 64
    )
    assert body["messages"][0]["content"] == GENEVAL


def test_the_key_comes_only_from_the_named_variable(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(LensError, match=KEY_ENV):  # a remote endpoint without a key: refused at build time
        PromptReasoner.from_api("m", "https://reasoner.example.invalid/v1", KEY_ENV)
    local = PromptReasoner.from_api("m", "http://127.0.0.1:9/v1", KEY_ENV)  # local servers take any key
    assert local.api.client.api_key == "EMPTY"
    monkeypatch.setenv(KEY_ENV, "sk-from-env")
    assert PromptReasoner.from_api("m", "http://127.0.0.1:9/v1", KEY_ENV).api.client.api_key == "sk-from-env"
    with pytest.raises(LensError, match="model name"):
        PromptReasoner.from_api("", "http://127.0.0.1:9/v1")


def test_transient_failures_are_retried(server, api_reasoner):
    server.script.extend(["500", "malformed", "503"])
    reasoner = api_reasoner(settings={"max_retries": 3})
    assert reasoner.rewrite(PROMPT) == server.answer(PROMPT)
    assert server.behaviours["500"] == 1 and server.behaviours["malformed"] == 1 and len(reasoner.sleeps) == 3
    assert reasoner.stats["api"] == 1


@pytest.mark.parametrize(
    "script, reason, requests",
    [
        (["500", "500", "500"], "InternalServerError 500", 3),  # 1 try + 2 retries, then give up
        (["malformed"] * 3, "failed 3 times", 3),
        (["401"], "AuthenticationError 401", 1),  # no retry can fix a bad key
    ],
)
def test_failures_keep_the_original_prompt_and_are_counted(
    server, api_reasoner, caplog, script, reason, requests
):
    server.script.extend(script)
    reasoner = api_reasoner()
    with caplog.at_level(logging.WARNING, logger="lens.reasoner"):
        assert reasoner.rewrite(PROMPT) == PROMPT
    assert len(server.bodies) == requests and reasoner.stats["failed"] == 1
    assert reason in reasoner.last_error
    assert any("keeping the original prompt" in r.message and reason in r.message for r in caplog.records)
    if "401" in script:
        assert KEY_ENV in reasoner.last_error


def test_an_empty_answer_keeps_the_prompt(server, api_reasoner, caplog):
    server.script.append("empty")
    reasoner = api_reasoner()
    with caplog.at_level(logging.WARNING, logger="lens.reasoner"):
        assert reasoner.rewrite(PROMPT) == PROMPT
    assert reasoner.stats["empty"] == 1 and "empty answer" in caplog.text


def test_a_slow_server_times_out_and_keeps_the_prompt(server, api_reasoner):
    server.slow_s = 3.0
    server.script.append("slow")
    reasoner = api_reasoner(settings={"timeout": 0.4, "max_retries": 0})
    start = time.monotonic()
    assert reasoner.rewrite(PROMPT) == PROMPT
    assert time.monotonic() - start < 2.5 and "Timeout" in reasoner.last_error


def test_a_trickling_server_is_bounded_as_a_whole(monkeypatch):
    """Per-socket-read timeouts never fire on a byte every 0.2 s; the whole-request deadline does."""
    trickle = TrickleServer(part="body", interval=0.2, give_up_s=20)
    try:
        reasoner = PromptReasoner.from_api("m", trickle.url, KEY_ENV, timeout=0.8, max_retries=0)
        start = time.monotonic()
        assert reasoner.rewrite(PROMPT) == PROMPT
        assert time.monotonic() - start < 4 and reasoner.stats["failed"] == 1
    finally:
        trickle.close()


def test_an_unreachable_server_keeps_the_prompt(monkeypatch):
    gone = ReasonerServer()
    gone.close()  # the port is closed now: connection refused
    reasoner = PromptReasoner.from_api("m", gone.url, KEY_ENV, max_retries=1, sleep=lambda s: None)
    assert reasoner.rewrite(PROMPT) == PROMPT and "APIConnectionError" in reasoner.last_error


@pytest.mark.parametrize("kind", ["harmony", "think"])
def test_reasoning_passed_through_by_a_server_is_dropped(server, api_reasoner, kind):
    server.script.append(kind)
    assert api_reasoner().rewrite(PROMPT) == server.answer(PROMPT)


def test_blank_prompts_are_never_sent(server, api_reasoner):
    reasoner = api_reasoner()
    assert reasoner(["", "  ", PROMPT]) == ["", "  ", server.answer(PROMPT)]
    assert len(server.bodies) == 1 and reasoner.stats["skipped"] == 2


def test_backoff_honours_retry_after_within_its_cap():
    rewriter = ApiRewriter(ApiSettings("m", retry_after_cap=2.0), client=object(), seed=0)
    assert 2.0 <= rewriter.backoff(1, 100.0) <= 2.2
    assert 0 < rewriter.backoff(10, None) <= rewriter.s.backoff_cap


# ---------------------------------------------------------------- the local path, tiny GPT-OSS


def forcing(tokenizer, text: str, seen: list):
    """A prefix_allowed_tokens_fn that makes the model write `text` token by token (then <|return|>)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [
        tokenizer.convert_tokens_to_ids("<|return|>")
    ]

    def allowed(batch_id, input_ids):
        if not seen:
            seen.append(input_ids.clone())  # the conversation the model was given
        step = len(input_ids) - len(seen[0])
        return [ids[min(step, len(ids) - 1)]]

    return allowed


def test_local_generation_returns_the_final_channel(pipe):
    seen: list = []
    written = "<|channel|>analysis<|message|>dense<|end|><|start|>assistant<|channel|>final<|message|>A red fox, white snow."
    reasoner = PromptReasoner(
        generate_kwargs={"prefix_allowed_tokens_fn": forcing(pipe.tokenizer, written, seen)}
    )
    assert reasoner.rewrite(PROMPT, pipe) == "A red fox, white snow."
    assert reasoner.stats["local"] == 1
    given = pipe.tokenizer.decode(seen[0], skip_special_tokens=False)
    assert (
        "Reasoning: low" in given
        and GENERAL in given
        and given.endswith(f"{PROMPT}<|end|><|start|>assistant")
    )


def test_local_generation_uses_the_released_sampling(pipe, monkeypatch):
    calls = []
    original = pipe.text_encoder.generate

    def spy(**kw):
        calls.append(kw)
        return original(**kw)

    monkeypatch.setattr(pipe.text_encoder, "generate", spy)
    torch.manual_seed(0)
    raw = LocalRewriter(pipe.text_encoder, pipe.tokenizer).generate(
        GENERAL, PROMPT, temperature=0.7, reasoning_effort="low", max_tokens=6
    )
    assert isinstance(raw, str) and raw
    kw = calls[0]
    assert kw["do_sample"] and kw["temperature"] == 0.7 and kw["max_new_tokens"] == 6
    assert pipe.tokenizer.convert_tokens_to_ids("<|return|>") in kw["eos_token_id"]


def test_a_random_model_without_a_final_channel_keeps_the_prompt(pipe, caplog):
    torch.manual_seed(0)
    reasoner = PromptReasoner(max_new_tokens=8)
    with caplog.at_level(logging.WARNING, logger="lens.reasoner"):
        assert reasoner.rewrite(PROMPT, pipe) == PROMPT
    assert reasoner.stats["failed"] == 1 and "no final channel" in reasoner.last_error
    assert "keeping the original prompt" in caplog.text


def test_local_needs_a_generating_gpt_oss(pipe):
    from lens.text.testing import tiny_chatml_tokenizer, tiny_qwen3

    assert can_generate(pipe.text_encoder, pipe.tokenizer) is None
    assert "no text encoder" in can_generate(None, pipe.tokenizer)
    assert "not GPT-OSS" in can_generate(tiny_qwen3(), tiny_chatml_tokenizer())
    reasoner = PromptReasoner()
    assert reasoner.rewrite(PROMPT) == PROMPT and "needs a pipeline" in reasoner.last_error


def test_the_api_takes_precedence_over_local(pipe, server, api_reasoner, monkeypatch):
    def never(**kw):
        raise AssertionError("the local model must not run when an API is configured")

    monkeypatch.setattr(pipe.text_encoder, "generate", never)
    server.script.append("500")
    reasoner = api_reasoner(settings={"max_retries": 0})
    assert reasoner.rewrite(PROMPT, pipe) == PROMPT  # a failing API keeps the prompt, no local fallback
    assert reasoner.rewrite(PROMPT, pipe) == server.answer(PROMPT)
