"""`lens reasoner search`: the paper's training-free search over the reasoner's system prompt
(the library side is `lens.reasoner.search`)."""

from __future__ import annotations

import argparse
import functools

from lens.cli.options import check_guidance, check_output_folder, make_output_folder
from lens.cli.reasoner_options import add_api_options, read_system_prompt, reasoner_from_args
from lens.errors import LensError


def register(sub) -> None:
    p = sub.add_parser("reasoner", help="the prompt reasoner: search for a better system prompt")
    actions = p.add_subparsers(dest="reasoner_command", required=True, metavar="ACTION")
    s = actions.add_parser(
        "search",
        help="improve the reasoner's system prompt on Nano-Eval with an LLM editor (the paper's loop)",
        description="Each iteration an editor LLM reads the current system prompt, its Nano-Eval score and a "
        "summary of its failures and proposes a new one; the reasoner rewrites every search prompt with it, "
        "the generator draws the rewrites, Nano-Eval scores them, and the candidate is kept only when it "
        "scores higher. Prints the score per iteration, then the initial and best prompts on held-out "
        "prompts. OUT/search.json holds every candidate, OUT/best_system_prompt.txt the best one (for "
        "--system-prompt-file); rerunning with the same OUT resumes without scoring anything twice.",
    )
    s.add_argument("--out", required=True, help="output folder (resumed when it holds a search)")
    s.add_argument("--iterations", type=int, default=4, help="editor proposals in all (default 4)")
    s.add_argument(
        "--reasoner",
        choices=("auto", "api", "local"),
        default="auto",
        help="the rewriter whose system prompt is searched: api = the chat model behind --api-base; local = "
        "the model's own GPT-OSS; auto (default) = api (it needs --api-model)",
    )
    add_api_options(s)  # --system-prompt-file: the initial prompt (default: the GenEval one)
    e = s.add_argument_group("prompt editor (each defaults to the reasoner's --api-* value)")
    e.add_argument("--editor-base", metavar="URL", help="editor API base")
    e.add_argument("--editor-model", metavar="NAME", help="editor chat model")
    e.add_argument("--editor-key-env", metavar="VAR", help="environment variable holding the editor API key")
    g = s.add_argument_group("generator")
    g.add_argument(
        "--generator",
        choices=("pipeline", "world"),
        default="pipeline",
        help="pipeline (default): the model draws the rewrites; world: the shapes world draws what each "
        "rewrite literally asks for (a stand-in that needs no model, lens.eval.reference.caption_generator)",
    )
    g.add_argument("--model", help="pipeline folder or hub id (default: the bundled Lens-Nano)")
    g.add_argument("--steps", type=int, default=20, help="Euler steps (default 20)")
    g.add_argument("--cfg", type=float, help="guidance scale (default: the model's)")
    g.add_argument("--size", help="HEIGHTxWIDTH (default: the model's; 64x64 for --generator world)")
    g.add_argument("--device", help="cuda, cpu, ... (default: cuda if available)")
    q = s.add_argument_group("prompts and scoring")
    q.add_argument("--prompts", help="GenEval-format JSONL (default: the Nano-Eval suite)")
    q.add_argument("--per-tag", type=int, default=4, help="prompts per category on each side (default 4)")
    q.add_argument(
        "--held-out", type=float, default=0.5, help="share of each category held out (default 0.5)"
    )
    q.add_argument("--n-samples", type=int, default=1, help="images per prompt (default 1)")
    q.add_argument("--seed", type=int, default=0, help="the split and the images (default 0)")
    q.add_argument("--batch-size", type=int, default=16, help="rewrites per generator call (default 16)")
    q.add_argument("--workers", type=int, default=0, help="scoring processes (default 0: inline)")
    q.add_argument("--examples", type=int, default=2, help="failure examples per category for the editor")
    s.set_defaults(func=_search)


def _editor(args: argparse.Namespace):
    """The prompt editor, each setting defaulting to the reasoner API's."""
    from lens.reasoner.api import DEFAULT_KEY_ENV, ApiSettings
    from lens.reasoner.editor import PromptEditor

    model = args.editor_model or args.api_model
    if not model:
        raise LensError("the search needs an editor LLM: --editor-model NAME [--editor-base URL]")
    key_env = args.editor_key_env or args.api_key_env or DEFAULT_KEY_ENV
    return PromptEditor(ApiSettings(model, args.editor_base or args.api_base, key_env))


def _generator(args: argparse.Namespace, pipe):
    """(generate, its label for the fingerprint)."""
    from lens.resolution import parse_size

    size = parse_size(args.size) if args.size else None
    if args.generator == "world":
        from lens.eval.reference import caption_generator

        height, width = size or (64, 64)
        return caption_generator(height, width), f"world {height}x{width}"
    from lens.eval.sweep import pipeline_generator

    height, width = size or (None, None)
    generate = pipeline_generator(pipe, args.steps, args.cfg, height, width)
    return generate, f"pipeline {args.model or 'bundled'} steps={args.steps} cfg={args.cfg} size={args.size}"


def _search(args: argparse.Namespace) -> int:
    if args.iterations < 0 or args.examples < 0:
        raise LensError("--iterations and --examples must be at least 0")
    if min(args.n_samples, args.per_tag, args.batch_size, args.steps) < 1:
        raise LensError("--n-samples, --per-tag, --batch-size and --steps must be at least 1")
    check_guidance("--cfg", args.cfg)
    out = check_output_folder("--out", args.out)
    reasoner = reasoner_from_args(args)
    if reasoner is None:
        raise LensError("the search needs a reasoner: --api-model NAME [--api-base URL], or --reasoner local")
    from lens.reasoner.prompts import SYSTEM_PROMPTS

    initial = read_system_prompt(args) or SYSTEM_PROMPTS["geneval"]
    editor = _editor(args)  # a missing key fails now, before any model loads
    from lens.eval.prompts import nano_prompts, read_prompts
    from lens.reasoner.scoring import score_system_prompt
    from lens.reasoner.search import BEST, prompts_id, search, split_prompts

    prompts = read_prompts(args.prompts) if args.prompts else nano_prompts()
    search_set, held = split_prompts(prompts, args.held_out, args.per_tag, args.seed)
    pipe = None
    if args.generator == "pipeline" or reasoner.source == "local":
        import torch

        from lens.inference import load_pipeline

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        pipe = load_pipeline(args.model, device=device, dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
    generate, label = _generator(args, pipe)
    scorer = functools.partial(
        score_system_prompt, reasoner=reasoner, generate=generate, n_samples=args.n_samples, seed=args.seed,
        batch_size=args.batch_size, workers=args.workers, examples=args.examples, pipe=pipe,
    )  # fmt: skip
    fingerprint = {
        "prompts": prompts_id(search_set),
        "held_out_prompts": prompts_id(held),
        "generator": label,
        "reasoner": f"api {reasoner.api.s.model}" if reasoner.api else f"local {args.model or 'bundled'}",
        "n_samples": args.n_samples,
        "seed": args.seed,
    }
    print(
        f"{len(search_set)} search prompts, {len(held)} held out; generator: {label}; reasoner: {reasoner!r}"
    )
    make_output_folder("--out", out)
    state = search(
        out, initial, functools.partial(scorer, prompts=search_set), editor, args.iterations,
        held_out=functools.partial(scorer, prompts=held) if held else None, fingerprint=fingerprint,
        report=functools.partial(print, flush=True),
    )  # fmt: skip
    best = state["candidates"][state["best"]]
    print(f"best system prompt: {out / BEST} (#{best['index']}, score {best['score']:.3f})")
    return 0
