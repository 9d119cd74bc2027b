"""Chat templates: the exact Harmony rendering, injectable date, derived prefix, generic HF template."""

from __future__ import annotations

import datetime as dt

import pytest

from lens.errors import LensError
from lens.text.chat import HarmonyTemplate, HFChatTemplate, token_ids
from lens.text.testing import PrefixTemplate, tiny_chatml_tokenizer, tiny_harmony_tokenizer

SYSTEM = (
    "Describe the image by detailing the color, shape, size, texture, quantity, text, spatial "
    "relationships of the objects and background."
)
THINKING = "Need to generate one image according to the description."


@pytest.fixture(scope="module")
def harmony_tok():
    return tiny_harmony_tokenizer()


@pytest.fixture(scope="module")
def chatml_tok():
    return tiny_chatml_tokenizer()


def test_harmony_render_is_the_reference_layout():
    expected = (
        "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
        "Knowledge cutoff: 2024-06\nCurrent date: 2026-05-21\n\nReasoning: medium\n\n"
        "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>"
        f"<|start|>developer<|message|># Instructions\n\n{SYSTEM}\n\n<|end|>"
        "<|start|>user<|message|>a red cube<|end|>"
        f"<|start|>assistant<|channel|>analysis<|message|>{THINKING}<|end|>"
        "<|start|>assistant<|channel|>final<|message|>"
    )
    assert HarmonyTemplate("2026-05-21").render("a red cube") == expected
    assert HarmonyTemplate(dt.date(2026, 5, 21)).render("a red cube") == expected


def test_harmony_date_defaults_to_today():
    assert f"Current date: {dt.date.today().isoformat()}\n" in HarmonyTemplate().render("a cat")


def test_prefix_is_derived_and_ends_right_before_the_prompt(harmony_tok):
    template = HarmonyTemplate("2026-05-21")
    prefix = template.prefix_ids(harmony_tok)
    assert template.prefix_length(harmony_tok) == len(prefix)
    assert harmony_tok.decode(prefix).endswith("<|start|>user<|message|>")
    for prompt in ("a red cube", "Zebra!", "日本語"):
        ids = token_ids(harmony_tok, template.render(prompt))
        assert ids[: len(prefix)] == prefix
        assert harmony_tok.decode(ids[len(prefix) :]).startswith(prompt)


def test_hf_chat_template_renders_lens_content_cut_before_the_final_answer(chatml_tok):
    template = HFChatTemplate(chatml_tok)
    text = template.render("two cats")
    assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\ntwo cats<|im_end|>\n")
    assert text.endswith(f"<|im_start|>assistant\n<think>\n{THINKING}\n</think>\n\n")
    prefix = template.prefix_ids(chatml_tok)
    assert chatml_tok.decode(prefix).endswith("<|im_start|>user\n")


def test_prefix_that_merges_into_the_prompt_is_rejected(harmony_tok):
    # o200k attaches a space to the following word, so the prefix's last token changes.
    with pytest.raises(LensError, match="token boundary"):
        PrefixTemplate("Prompt: ").prefix_length(harmony_tok)
    assert PrefixTemplate("Prompt:\n").prefix_length(harmony_tok) == len(token_ids(harmony_tok, "Prompt:\n"))


@pytest.mark.parametrize("bad", ["", "   \n\t", None, 3, ["a cat"]])
def test_invalid_prompts_raise(bad, chatml_tok):
    for template in (HarmonyTemplate("2026-05-21"), HFChatTemplate(chatml_tok)):
        with pytest.raises(LensError):
            template.render(bad)


def test_invalid_date_and_missing_chat_template_raise(harmony_tok):
    with pytest.raises(LensError, match="YYYY-MM-DD"):
        HarmonyTemplate("21/05/2026")
    with pytest.raises(LensError, match="no chat template"):
        HFChatTemplate(harmony_tok)  # the harmony tokenizers carry no jinja template
