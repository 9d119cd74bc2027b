"""Dense recaptioning through any OpenAI-compatible chat API: prompts, validation, retries, ledger."""
