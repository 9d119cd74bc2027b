"""What the post-training commands (`lens rl`, `lens distill`) share, so neither copies the other.

- config sections: `RunConfig` (steps, seed, precision, device, threads, AC, encoder dtype) and
  `LogConfig` (console, TensorBoard, sample grids), `check` (choices and the common checks, each
  failure one LensError line naming the field, then the command's own checks), `LENS_SIZES`;
- prompt files (`read_prompts`: .txt, .jsonl with metadata, or the Nano-Eval suite);
- `derived_seed`: every random draw of a run comes from a generator seeded by (run seed, step, what,
  index), so a resumed run draws exactly what a straight one would have;
- `pipeline_folder`: the pipeline a run starts from, or a seeded tiny random one ("tiny", for tests).

No torch at import: the configs that import this stay light.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from lens.errors import LensError
from lens.resolution import RATIOS, preset

log = logging.getLogger("lens.train")

TINY = "tiny"  # a pipeline spec: a seeded random tiny pipeline written into the run directory
NANO_EVAL_PROMPTS = "nano-eval"  # a prompts spec: the Nano-Eval suite with its GenEval metadata
# the nine 1024^2-area buckets (REFERENCE 10's mixed resolutions), 1:1 first: the size of sample grids
# and an export's default
LENS_SIZES = tuple("{}x{}".format(*preset(r)) for r in dict.fromkeys(("1:1", *RATIOS)))


@dataclass
class RunConfig:
    steps: int = 180
    seed: int = 0
    precision: str = "bf16"  # bf16 (autocast) | fp32
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # CPU threads (torch.set_num_threads); 0 = leave as is
    activation_checkpointing: bool = True  # per block, for the backward passes
    encoder_dtype: str = "bfloat16"  # frozen VAE and LM on GPU; CPU always runs float32


@dataclass
class LogConfig:
    every: int = 1  # console / TensorBoard interval (metrics.jsonl gets every step)
    tensorboard: bool = True
    peak_tflops: float = 0.0  # for MFU; 0 = from the device table
    sample_every: int = 0  # sample grids; 0 = off
    sample_prompts: tuple[str, ...] = ()
    sample_seed: int = 0


_CHOICES = {
    "run.precision": ("bf16", "fp32"),
    "run.device": ("auto", "cpu", "cuda"),
    "run.encoder_dtype": ("bfloat16", "float16", "float32"),
}


def check(cfg, own: list[tuple[bool, str]]):
    """Raise the first failed check as one LensError line: the choices, then `own` (the command's
    checks), then the sections every post-training config has (`optim`: AdamW, run, checkpoint, log)."""
    for key, choices in _CHOICES.items():
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) not in choices:
            raise LensError(f"{key} must be one of {', '.join(choices)}")
    o = cfg.optim
    shared = [
        (o.lr > 0 and o.weight_decay >= 0, "optim.lr must be > 0 and optim.weight_decay >= 0"),
        (len(o.betas) == 2, "optim.betas needs two values, e.g. 0.9,0.999"),
        (o.grad_clip >= 0, "optim.grad_clip must be >= 0 (0 = no clipping)"),
        (cfg.run.steps >= 1, "run.steps must be >= 1"),
        (
            cfg.checkpoint.interval >= 1 and cfg.checkpoint.keep >= 1,
            "checkpoint.interval and keep must be >= 1",
        ),
        (cfg.log.every >= 1 and cfg.log.sample_every >= 0, "log.every must be >= 1, log.sample_every >= 0"),
    ]
    for ok, message in own + shared:
        if not ok:
            raise LensError(message)
    return cfg


# ---------------------------------------------------------------------- prompts
@dataclass
class Prompt:
    text: str  # the request, what a reward judges
    metadata: dict | None  # a .jsonl line's whole object (what a reward reads), else None
    caption: str | None = None  # what the model is conditioned on, when a reasoner rewrote `text`

    @property
    def conditioning(self) -> str:
        return self.text if self.caption is None else self.caption


# `rollout.rewrite` / `data.rewrite`: none, or the caption style in which the nano world's rule-based
# reasoner rewrites every prompt (`lens.world.reasoner.rewrite_prompt`), as `lens eval nano-run
# --prompts reasoner` does for the model it scores; its captions carry grounding spans
# (`lens.text.grounding.GroundedPrompt`) that a grounded model is conditioned on
REWRITES = ("none", "compact", "verbose")


def rewrite_prompts(
    prompts: list[Prompt], style: str, field: str = "prompts", object_scale: float = 1.0
) -> list[Prompt]:
    """Each prompt with the nano reasoner's caption of it in `style` ("none": unchanged), its scene
    laid out at `object_scale` (`base_object_scale`); `field` names where the prompts came from in the
    error for one the reasoner cannot read."""
    if style == "none":
        return prompts
    from lens.world.reasoner import rewrite_prompt

    try:
        return [
            Prompt(p.text, p.metadata, rewrite_prompt(p.text, style=style, object_scale=object_scale))
            for p in prompts
        ]
    except LensError as err:
        raise LensError(f"{field} (rewritten by the nano reasoner, style {style}): {err}") from None


def sample_captions(texts, style: str, object_scale: float = 1.0) -> list[str]:
    """What the model is conditioned on for each fixed sample prompt (`log.sample_prompts`) under
    `style`. Run when a run starts, so that a prompt the reasoner cannot read stops it before step 1,
    not at its first sample grid."""
    prompts = rewrite_prompts([Prompt(t, None) for t in texts], style, "log.sample_prompts", object_scale)
    return [p.conditioning for p in prompts]


def base_object_scale(spec: str) -> float:
    """The base pipeline's `world_object_scale`, at which the nano reasoner lays out its scenes; 1.0
    for the tiny base and for a folder that is not there yet (`pipeline_folder` then says why)."""
    if spec == TINY or not (Path(spec) / "model_index.json").is_file():
        return 1.0
    from lens.inference import world_object_scale

    return world_object_scale(spec)


def read_prompts(spec: str, field: str = "rollout.prompts") -> list[Prompt]:
    """ "nano-eval", a .jsonl file ({"prompt": ...} per line, the object its metadata) or a text file
    (one prompt per line; blank lines and lines starting with # are skipped). `field` names the
    config field in errors."""
    if spec == NANO_EVAL_PROMPTS:
        from lens.eval.prompts import nano_prompts

        return [Prompt(md["prompt"], md) for md in nano_prompts()]
    path = Path(spec)
    if not path.is_file():
        raise LensError(f"{field}={spec}: no such file; give a .txt or .jsonl prompt file, or nano-eval")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if path.suffix != ".jsonl":
            if line.strip() and not line.lstrip().startswith("#"):
                out.append(Prompt(line.strip(), None))
            continue
        if not line.strip():
            continue
        try:
            md = json.loads(line)
        except ValueError:
            raise LensError(f'{path}:{n} is not JSON; write one object with a "prompt" per line') from None
        if not isinstance(md, dict) or not isinstance(md.get("prompt"), str) or not md["prompt"].strip():
            raise LensError(f'{path}:{n} has no "prompt" text')
        out.append(Prompt(md["prompt"], md))
    if not out:
        raise LensError(f"{field}={spec} holds no prompts")
    return out


def derived_seed(*key) -> int:
    digest = hashlib.sha256("/".join(map(str, key)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


# ---------------------------------------------------------------------- the starting pipeline
def pipeline_folder(spec: str, tiny_folder: Path, field: str, size: tuple[int, int], seed: int) -> Path:
    """`spec` as a pipeline folder; "tiny" writes a seeded random tiny pipeline of native size `size`
    to `tiny_folder` once. `field` names the config field in errors."""
    if spec == TINY:
        if not (tiny_folder / "model_index.json").is_file():
            from lens.testing import tiny_random_pipeline

            tiny_random_pipeline(seed=seed, height=size[0], width=size[1]).save_pretrained(str(tiny_folder))
            log.info("wrote a tiny random pipeline to %s", tiny_folder)
        return tiny_folder.resolve()
    folder = Path(spec)
    if not (folder / "transformer" / "config.json").is_file():
        raise LensError(
            f"{field}={folder} is not a pipeline folder (no transformer/config.json); download one "
            "(huggingface-cli download microsoft/Lens --local-dir models/lens) or pass a `lens export` folder"
        )
    return folder.resolve()  # the run's saved config then exports from any working directory
