"""Nano-Eval: a GenEval-style benchmark for the shapes world (lens.world).

Prompts carry GenEval's six tags and metadata format; a deterministic analyser (segmentation,
geometric shape features, CIELAB colour names) stands in for GenEval's detector and colour
classifier; scoring follows GenEval's rules. Generated images live in GenEval's folder layout
(lens.eval.layout).
"""

from lens.eval.detect import Detection, detect
from lens.eval.layout import iter_prompt_dirs, prompt_dir, sample_path, write_prompt_dir
from lens.eval.nano_eval import evaluate as evaluate_generator
from lens.eval.nano_eval import to_images
from lens.eval.prompts import nano_prompts, read_prompts, write_prompts
from lens.eval.reference import render_reference
from lens.eval.rules import evaluate, format_scores, summarize
from lens.eval.score import score_folder, score_image, write_results

__all__ = [
    "Detection",
    "detect",
    "evaluate",
    "evaluate_generator",
    "format_scores",
    "iter_prompt_dirs",
    "nano_prompts",
    "prompt_dir",
    "read_prompts",
    "render_reference",
    "sample_path",
    "score_folder",
    "score_image",
    "summarize",
    "to_images",
    "write_prompt_dir",
    "write_prompts",
    "write_results",
]
