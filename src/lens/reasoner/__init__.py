"""The prompt reasoner: rewrite a short request into the dense caption Lens was trained to read.

- `lens.reasoner.core`: `PromptReasoner` (API first, else the loaded GPT-OSS; the original prompt on
  any failure) and the pipeline hook behind `LensPipeline.enable_reasoner`.
- `lens.reasoner.prompts`: our system prompts, general and GenEval-style.
- `lens.reasoner.api`: any OpenAI-compatible chat-completions endpoint, with the caption client's retries.
- `lens.reasoner.local`: generation with the pipeline's own text encoder (no extra memory).
- `lens.reasoner.harmony`: the Harmony conversation to continue and its final-channel parser.
- `lens.reasoner.search`: the paper's training-free system-prompt search (`lens reasoner search`), with
  `scoring` (a system prompt on Nano-Eval, its failures summarised) and `editor` (the LLM that
  rewrites the system prompt).

Importing this package loads neither torch nor openai; each path imports what it needs when used.
"""

from lens.reasoner.api import ApiSettings
from lens.reasoner.core import PromptReasoner
from lens.reasoner.prompts import SYSTEM_PROMPTS

__all__ = ["SYSTEM_PROMPTS", "ApiSettings", "PromptReasoner"]
