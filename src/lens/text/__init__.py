"""The text path: chat templates, the GPT-OSS `o200k_harmony` tokenizer, and LM feature extraction.

- `lens.text.chat`: the Harmony template the Lens weights were trained with, and a generic one for
  any Hugging Face chat LM; both derive the template-prefix length by tokenising.
- `lens.text.tokenizer`: the real `o200k_harmony` tokenizer built offline (tiktoken and transformers).
- `lens.text.features`: residual-stream features after chosen decoder layers, with early exit.
- `lens.text.encoder`: `LensGptOssEncoder` and `encode_prompts`, what the pipeline calls.
- `lens.text.testing`: tiny random LMs and a compact tokenizer for tests and tiny pipelines.

Submodules are imported explicitly so that `import lens.text` stays free of torch/transformers.
"""
