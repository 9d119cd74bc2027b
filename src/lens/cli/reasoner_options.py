"""The reasoner options of `lens generate` (beyond the nano one) and `lens reasoner search`: an
OpenAI-compatible API or the model's own GPT-OSS, and a system prompt from a file (this module
registers no command of its own; the library side is `lens.reasoner`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lens.errors import LensError

REASONER_CHOICES = ("auto", "nano", "api", "local", "none")
REASONER_HELP = (
    "rewrite the prompt first: nano = the shapes world's rule-based reasoner (what Lens-Nano was trained "
    "to read); api = a chat model behind --api-base (OpenAI-compatible); local = the model's own GPT-OSS "
    "text encoder; auto (default) = api when --api-model is given, else nano for the bundled model, "
    "none otherwise. A failing api/local reasoner keeps the prompt as it is, with a warning"
)


def add_api_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-base", metavar="URL", help="reasoner API base, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="environment variable holding the reasoner API key (default OPENAI_API_KEY)",
    )
    parser.add_argument("--api-model", metavar="NAME", help="reasoner chat model, e.g. openai/gpt-oss-20b")
    parser.add_argument(
        "--system-prompt-file",
        metavar="PATH",
        help="the reasoner's system prompt, read from this text file (e.g. the best_system_prompt.txt "
        "of `lens reasoner search`)",
    )


def read_system_prompt(args: argparse.Namespace) -> str | None:
    """The text of --system-prompt-file (None when not given); a LensError if it cannot be used."""
    if not args.system_prompt_file:
        return None
    try:
        text = Path(args.system_prompt_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise LensError(f"--system-prompt-file {args.system_prompt_file}: cannot read it ({err})") from err
    if not text:
        raise LensError(f"--system-prompt-file {args.system_prompt_file} is empty")
    return text


def reasoner_from_args(args: argparse.Namespace):
    """The PromptReasoner for --reasoner api/local (None for nano/none), checked before any model
    loads. auto with --api-model means api: a configured API takes precedence, as released."""
    api_given = [f for f, v in (("--api-base", args.api_base), ("--api-key-env", args.api_key_env)) if v]
    if args.api_model:
        api_given.append("--api-model")
    if args.reasoner == "auto" and args.api_model:
        args.reasoner = "api"
    if api_given and args.reasoner != "api":
        raise LensError(f"{', '.join(api_given)} need --reasoner api, not --reasoner {args.reasoner}")
    if args.reasoner == "api" and not args.api_model:
        raise LensError("--reasoner api needs --api-model NAME (and --api-base URL unless it is OpenAI)")
    if args.system_prompt_file and args.reasoner not in ("api", "local"):
        raise LensError(f"--system-prompt-file needs --reasoner api or local, not --reasoner {args.reasoner}")
    if args.reasoner not in ("api", "local"):
        return None
    from lens.reasoner import PromptReasoner

    system = read_system_prompt(args) or "general"
    if args.reasoner == "local":
        return PromptReasoner(system)
    key_env = args.api_key_env or "OPENAI_API_KEY"
    return PromptReasoner.from_api(args.api_model, args.api_base, key_env, system=system)
