"""encode_prompts on tiny random LMs: pre-norm layer features, prefix drop, padding, truncation, early exit."""

from __future__ import annotations

import importlib

import pytest
import torch

from lens.errors import LensError
from lens.text.chat import HarmonyTemplate, HFChatTemplate, token_ids
from lens.text.encoder import LensGptOssEncoder, encode_prompts
from lens.text.testing import (
    PrefixTemplate,
    tiny_chatml_tokenizer,
    tiny_gpt_oss,
    tiny_harmony_tokenizer,
    tiny_qwen3,
)

TEMPLATE = HarmonyTemplate("2026-05-21")


PROMPTS = ["a red cube", "a small green pyramid next to a large blue sphere on a wooden table"]


@pytest.fixture(scope="module")
def tok():
    return tiny_harmony_tokenizer()


@pytest.fixture(scope="module")
def lm():
    return tiny_gpt_oss(num_layers=4)


def _full_forward(lm, tok, prompts):
    """Reference: a plain HF forward over the right-padded batch, plus the input of the final norm."""
    rows = [token_ids(tok, TEMPLATE.render(p)) for p in prompts]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
    attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    pre_norm = {}
    handle = lm.model.norm.register_forward_pre_hook(lambda mod, args: pre_norm.setdefault("x", args[0]))
    with torch.no_grad():
        out = lm(input_ids=ids, attention_mask=attention, output_hidden_states=True)
    handle.remove()
    return out.hidden_states, pre_norm["x"], attention.bool()


def test_features_are_prenorm_hidden_states_after_each_layer(lm, tok):
    features, mask = encode_prompts(lm, tok, PROMPTS, layers=(1, 3), template=TEMPLATE)
    hidden, pre_norm, attention = _full_forward(lm, tok, PROMPTS)
    n = TEMPLATE.prefix_length(tok)
    assert features.shape == (2, attention.shape[1] - n, 2, lm.config.hidden_size)
    real = mask[:, :, None]  # (B, S, 1)
    # Layer 1 (not final): exactly HF's hidden_states[2].
    torch.testing.assert_close(features[:, :, 0] * real, hidden[2][:, n:] * real, rtol=1e-5, atol=1e-6)
    # Layer 3 is the LM's last layer: Lens takes the residual stream BEFORE the final norm...
    torch.testing.assert_close(features[:, :, 1] * real, pre_norm[:, n:] * real, rtol=1e-5, atol=1e-6)
    # ...while HF's last hidden state has the norm applied, so it differs.
    assert not torch.allclose(features[:, :, 1][mask], hidden[4][:, n:][mask], atol=1e-3)
    torch.testing.assert_close(lm.model.norm(features[:, :, 1])[mask], hidden[4][:, n:][mask])
    assert not features.is_inference() and not features.requires_grad


def test_prefix_dropped_mask_and_right_padding(lm, tok):
    features, mask = encode_prompts(lm, tok, PROMPTS, layers=(2, 0), template=TEMPLATE)
    n = TEMPLATE.prefix_length(tok)
    lengths = [len(token_ids(tok, TEMPLATE.render(p))) - n for p in PROMPTS]
    assert lengths[0] < lengths[1] == features.shape[1]
    assert mask.dtype == torch.bool
    assert mask.sum(1).tolist() == lengths
    assert mask[0, : lengths[0]].all() and not mask[0, lengths[0] :].any()  # right padding
    assert (features[0, lengths[0] :] == 0).all() and (features[0, : lengths[0]] != 0).any()
    # Each row equals encoding that prompt alone (padding never leaks into real tokens).
    alone, alone_mask = encode_prompts(lm, tok, PROMPTS[:1], layers=(2, 0), template=TEMPLATE)
    assert alone.shape[1] == lengths[0] and alone_mask.all()
    torch.testing.assert_close(features[0, : lengths[0]], alone[0], rtol=1e-5, atol=1e-6)
    # The first kept token is the prompt's first token, not template.
    ids = token_ids(tok, TEMPLATE.render(PROMPTS[0]))
    assert tok.decode(ids[n:]).startswith(PROMPTS[0])
    # Layers come back in the order asked for.
    both, _ = encode_prompts(lm, tok, PROMPTS[:1], layers=(0, 2), template=TEMPLATE)
    torch.testing.assert_close(both.flip(2), alone)
    half, _ = encode_prompts(lm, tok, PROMPTS[:1], layers=(0, 2), template=TEMPLATE, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16


def test_truncation_counts_the_template(lm, tok):
    n = TEMPLATE.prefix_length(tok)
    full, _ = encode_prompts(lm, tok, PROMPTS, layers=(1,), template=TEMPLATE)
    cut, mask = encode_prompts(lm, tok, PROMPTS, layers=(1,), template=TEMPLATE, max_length=n + 5)
    assert cut.shape[1] == 5 and mask.all()
    torch.testing.assert_close(
        cut, full[:, :5], rtol=1e-5, atol=1e-6
    )  # causal: a cut changes nothing before it


def test_layers_after_the_last_selected_one_do_not_run(lm, tok):
    calls = {}
    modules = {f"layer{i}": layer for i, layer in enumerate(lm.model.layers)}
    modules |= {"norm": lm.model.norm, "lm_head": lm.lm_head}
    handles = [
        m.register_forward_hook(lambda *a, k=k: calls.__setitem__(k, calls.get(k, 0) + 1))
        for k, m in modules.items()
    ]
    try:
        encode_prompts(lm, tok, PROMPTS, layers=(1,), template=TEMPLATE)
    finally:
        for h in handles:
            h.remove()
    assert calls == {"layer0": 1, "layer1": 1}
    # The hooks are removed afterwards: a normal forward still runs every layer.
    out = lm(input_ids=torch.tensor([[1, 2, 3]]), output_hidden_states=True)
    assert len(out.hidden_states) == 5


def test_features_run_through_the_lm_own_forward(lm, tok):
    # accelerate's model CPU offload loads the weights in a hook on the LM itself, not on `lm.model`.
    entered = []
    handle = lm.register_forward_pre_hook(lambda module, args, kwargs: entered.append(1), with_kwargs=True)
    try:
        encode_prompts(lm, tok, PROMPTS, layers=(1,), template=TEMPLATE)
    finally:
        handle.remove()
    assert entered == [1]


def test_empty_prompts_are_encoded_only_when_allowed(lm, tok):
    with pytest.raises(LensError, match="empty"):
        encode_prompts(lm, tok, [""], layers=(0,), template=TEMPLATE)
    features, mask = encode_prompts(lm, tok, ["", "a cat"], layers=(0,), template=TEMPLATE, allow_empty=True)
    suffix = len(token_ids(tok, TEMPLATE.render("", allow_empty=True))) - TEMPLATE.prefix_length(tok)
    assert mask.sum(1).tolist()[0] == suffix > 0  # the template after an empty user message


def test_generic_causal_lm_qwen3():
    qwen, qtok = tiny_qwen3(num_layers=3), tiny_chatml_tokenizer()
    prompts = ["two cats", "a lighthouse at dusk under a purple sky"]
    features, mask = encode_prompts(qwen, qtok, prompts, layers=(0, 1))  # template=None -> chat template
    rows = [qtok.apply_chat_template([{"role": "user", "content": p}], tokenize=False) for p in prompts]
    assert all("<|im_start|>user\n" in r for r in rows)
    assert features.shape[:3] == (2, mask.shape[1], 2) and features.shape[3] == 32
    assert mask[1].all() and not mask[0].all()
    with torch.no_grad():  # reference: HF hidden_states of the second (unpadded) prompt alone
        template = HFChatTemplate(qtok)
        ids = torch.tensor([token_ids(qtok, template.render(prompts[1]))])
        hidden = qwen(input_ids=ids, output_hidden_states=True).hidden_states
    n = template.prefix_length(qtok)
    torch.testing.assert_close(features[1, :, 0], hidden[1][0, n:], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(features[1, :, 1], hidden[2][0, n:], rtol=1e-5, atol=1e-6)


def test_gpt_oss_picks_harmony_by_default(lm, tok):
    features, _ = encode_prompts(lm, tok, PROMPTS[:1], layers=(0,))
    explicit, _ = encode_prompts(lm, tok, PROMPTS[:1], layers=(0,), template=HarmonyTemplate())
    torch.testing.assert_close(features, explicit)


def test_bad_inputs_raise(lm, tok):
    with pytest.raises(LensError, match="4 decoder layers"):
        encode_prompts(lm, tok, PROMPTS)  # Lens's (5, 11, 17, 23) on a 4-layer LM
    for layers in [(4,), (-1,), (), (1.0,), "1"]:
        with pytest.raises(LensError):
            encode_prompts(lm, tok, PROMPTS, layers=layers)
    for prompts in ["a cat", [], ["a cat", ""], ["a cat", None]]:
        with pytest.raises(LensError):
            encode_prompts(lm, tok, prompts, layers=(0,))
    glued = PrefixTemplate("hello wor")  # passes the sentinel check, but "wor" + "ld" merges into " world"
    assert glued.prefix_length(tok) == len(token_ids(tok, "hello wor"))
    with pytest.raises(LensError, match="merges with the template prefix"):
        encode_prompts(lm, tok, ["ld is round"], layers=(0,), template=glued)
    with pytest.raises(LensError, match="max_length"):
        encode_prompts(
            lm, tok, PROMPTS, layers=(0,), template=TEMPLATE, max_length=TEMPLATE.prefix_length(tok)
        )


def test_lens_encoder_resolves_through_transformers_and_reloads(lm, tok, tmp_path):
    from diffusers.pipelines.pipeline_loading_utils import _get_library_or_raise

    assert _get_library_or_raise("transformers").LensGptOssEncoder is LensGptOssEncoder
    assert importlib.import_module("transformers").LensGptOssEncoder is LensGptOssEncoder
    lm.save_pretrained(tmp_path)
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) < 2_000_000
    reloaded = LensGptOssEncoder.from_pretrained(tmp_path, attn_implementation="eager").eval()
    a, _ = encode_prompts(lm, tok, PROMPTS, layers=(1, 3), template=TEMPLATE)
    b, _ = encode_prompts(reloaded, tok, PROMPTS, layers=(1, 3), template=TEMPLATE)
    torch.testing.assert_close(a, b)
