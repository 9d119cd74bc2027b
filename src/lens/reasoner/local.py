"""The reasoner on the pipeline's own GPT-OSS: the text encoder generates, no second model is loaded.

`pipe.text_encoder` is a full `GptOssForCausalLM` (`LensGptOssEncoder`) whose LM head the encoder
path never runs; here transformers' `generate` runs it, so the rewrite costs time, not memory. The
conversation is Harmony with reasoning effort low (`harmony.conversation`); the model writes an
analysis turn, then the final one, and only the final channel is returned.

Calling the LM itself (not its base model) keeps accelerate's model-CPU-offload hook in the loop, as
`lens.text.features` does: the weights come to the execution device for the generation.
"""

from __future__ import annotations

import logging

import torch

from lens.reasoner.api import RewriteFailed
from lens.reasoner.harmony import STOP_TOKENS, conversation, final_channel, is_terminated

log = logging.getLogger("lens.reasoner")


def _device(lm: torch.nn.Module) -> torch.device:
    param = next(lm.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def can_generate(text_encoder, tokenizer) -> str | None:
    """None if this LM and tokenizer can rewrite locally, else why not (for the warning)."""
    if text_encoder is None or tokenizer is None:
        return "the pipeline has no text encoder or tokenizer (loaded with precomputed embeddings?)"
    if getattr(getattr(text_encoder, "config", None), "model_type", None) != "gpt_oss":
        return f"the text encoder is {type(text_encoder).__name__}, not GPT-OSS (Harmony is GPT-OSS's format)"
    if not hasattr(text_encoder, "generate") or text_encoder.get_output_embeddings() is None:
        return "the text encoder has no LM head to generate with"
    if tokenizer.convert_tokens_to_ids(STOP_TOKENS[0]) in (None, tokenizer.unk_token_id):
        return "the tokenizer has no Harmony special tokens"
    return None


class LocalRewriter:
    """Harmony generation with a loaded GPT-OSS: (system, prompt) -> the final channel's text."""

    def __init__(self, text_encoder, tokenizer, *, device=None, generate_kwargs: dict | None = None):
        why = can_generate(text_encoder, tokenizer)
        if why is not None:
            raise RewriteFailed(f"cannot rewrite locally: {why}")
        self.lm, self.tokenizer = text_encoder, tokenizer
        self.device = torch.device(device) if device is not None else _device(text_encoder)
        # Extra `generate` arguments (top_p, a logits processor...); tests force token sequences here.
        self.generate_kwargs = dict(generate_kwargs or {})

    def stop_ids(self) -> list[int]:
        ids = [self.tokenizer.convert_tokens_to_ids(t) for t in STOP_TOKENS]
        return [i for i in ids if i is not None and i != self.tokenizer.unk_token_id]

    def generate(self, system: str, prompt: str, *, temperature, reasoning_effort, max_tokens: int) -> str:
        """The raw Harmony text the model wrote after `<|start|>assistant` (special tokens kept)."""
        text = conversation(system, prompt, reasoning=reasoning_effort or "low")
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")
        input_ids = ids["input_ids"].to(self.device)  # (1, T)
        attention = ids["attention_mask"].to(self.device)
        pad = self.tokenizer.pad_token_id
        sampling = (
            {"do_sample": False} if not temperature else {"do_sample": True, "temperature": temperature}
        )
        with torch.inference_mode():
            out = self.lm.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=max_tokens,
                eos_token_id=self.stop_ids(),
                pad_token_id=pad if pad is not None else self.stop_ids()[0],
                **sampling,
                **self.generate_kwargs,
            )  # (1, T + new)
        return self.tokenizer.decode(out[0, input_ids.shape[1] :], skip_special_tokens=False)

    def rewrite(self, system: str, prompt: str, *, temperature, reasoning_effort, max_tokens: int) -> str:
        """The final channel ("" if empty), or RewriteFailed when the model wrote no final channel."""
        raw = self.generate(
            system, prompt, temperature=temperature, reasoning_effort=reasoning_effort, max_tokens=max_tokens
        )
        answer = final_channel(raw)
        if answer is None:
            raise RewriteFailed(
                f"the local model wrote no final channel in {max_tokens} new tokens (raw: {raw[:80]!r})"
            )
        if not is_terminated(raw):
            log.warning("the local reasoner's answer hit the %d-token limit; using it as it is", max_tokens)
        return answer
