"""What `LensPipeline.__call__` accepts, checked before any model runs: prompts or precomputed
embeddings, negatives, sizes and step-callback tensors. Every failure is a LensError that says how
to fix the call. `check_call` gathers what every Lens pipeline (text-to-image, image-to-image,
inpainting) shares into one `CallInputs`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from torch import Tensor

from lens.errors import LensError
from lens.resolution import preset, validate_size
from lens.text.grounding import phrase_spans

OUTPUT_TYPES = ("pil", "np", "pt", "latent")
# What a step callback may ask for (and return, except noise_pred), as in the released pipeline.
CALLBACK_TENSOR_INPUTS = ["latents", "prompt_embeds", "negative_prompt_embeds", "noise_pred"]


def check_prompts(prompt, prompt_embeds: Tensor | None) -> list[str] | None:
    """The prompts as a list (None when embeddings are given). Any string is a prompt, even an empty
    one, as in the released pipeline."""
    if (prompt is None) == (prompt_embeds is None):
        raise LensError(
            "pass either prompt or prompt_embeds (from encode_prompt), not both"
            if prompt is not None
            else "pass a prompt (a string or a list of strings) or prompt_embeds"
        )
    if prompt is None:
        return None
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise LensError(
            f"prompt must be a string or a non-empty list of strings, got {type(prompt).__name__}"
        )
    if not all(isinstance(p, str) for p in prompts):
        raise LensError(f"every prompt must be a string, got {[type(p).__name__ for p in prompts]}")
    return list(prompts)


def check_negatives(negative_prompt, negative_prompt_embeds: Tensor | None, batch: int) -> list[str] | None:
    """One negative prompt per prompt, or None. "" (the released default) is the null condition."""
    if negative_prompt is not None and negative_prompt_embeds is not None:
        raise LensError("pass either negative_prompt or negative_prompt_embeds, not both")
    if negative_prompt is None:
        return None
    negs = [negative_prompt] * batch if isinstance(negative_prompt, str) else negative_prompt
    if not isinstance(negs, (list, tuple)) or len(negs) != batch:
        n = len(negs) if isinstance(negs, (list, tuple)) else type(negs).__name__
        raise LensError(
            f"negative_prompt must be a string or a list of {batch} strings (one per prompt), got {n}"
        )
    if not all(isinstance(n, str) for n in negs):
        raise LensError("every negative prompt must be a string")
    return list(negs)


def check_embeds(
    embeds: Tensor | None, mask: Tensor | None, name: str, layers: int, width: int, batch: int | None
) -> None:
    """Precomputed text features must look like encode_prompt's: (B, S, L, D) and a (B, S) mask."""
    if embeds is None:
        if mask is not None:
            raise LensError(f"{name.replace('embeds', 'mask')} was given without {name}")
        return
    shape = tuple(embeds.shape) if isinstance(embeds, Tensor) else None
    if shape is None or len(shape) != 4 or shape[2:] != (layers, width):
        raise LensError(
            f"{name} must be a (B, S, {layers}, {width}) tensor as encode_prompt returns it "
            f"({layers} LM layers of width {width}), got {shape or type(embeds).__name__}"
        )
    if batch is not None and shape[0] != batch:
        raise LensError(f"{name} holds {shape[0]} rows but there are {batch} prompts")
    if mask is not None and (not isinstance(mask, Tensor) or tuple(mask.shape) != shape[:2]):
        got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise LensError(f"{name.replace('embeds', 'mask')} must be (B, S) = {shape[:2]}, got {got}")


def check_text_inputs(
    prompt,
    negative_prompt,
    prompt_embeds: Tensor | None,
    prompt_mask: Tensor | None,
    negative_prompt_embeds: Tensor | None,
    negative_prompt_mask: Tensor | None,
    embeds_shape: tuple[int, int],
) -> tuple[list[str] | None, list[str] | None, int]:
    """(prompts, negatives, number of prompts) from text or embeddings with (L, D) = embeds_shape."""
    prompts = check_prompts(prompt, prompt_embeds)
    check_embeds(prompt_embeds, prompt_mask, "prompt_embeds", *embeds_shape, None)
    rows = len(prompts) if prompts is not None else prompt_embeds.shape[0]
    negatives = check_negatives(negative_prompt, negative_prompt_embeds, rows)
    check_embeds(negative_prompt_embeds, negative_prompt_mask, "negative_prompt_embeds", *embeds_shape, rows)
    return prompts, negatives, rows


def check_callback_inputs(names) -> list[str]:
    """The callback's tensor names, refused before the first step if one is unknown."""
    names = list(names)
    bad = sorted(set(names) - set(CALLBACK_TENSOR_INPUTS))
    if bad:
        raise LensError(f"callback tensors {bad} unknown; choose from {CALLBACK_TENSOR_INPUTS}")
    return names


def check_steps(steps, num_images_per_prompt, output_type) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise LensError(f"num_inference_steps must be a positive integer, got {steps!r}")
    if not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
        raise LensError(f"num_images_per_prompt must be a positive integer, got {num_images_per_prompt!r}")
    if output_type not in OUTPUT_TYPES:
        raise LensError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")


def resolve_size(
    height, width, aspect_ratio, resolution, max_area, default: tuple[int, int]
) -> tuple[int, int]:
    """(height, width) from a released preset or explicit sides (default: the model's native size)."""
    if aspect_ratio is not None:
        if height is not None or width is not None:
            raise LensError("pass either aspect_ratio or height/width, not both")
        return preset(aspect_ratio, resolution)
    height = default[0] if height is None else height
    width = default[1] if width is None else width
    return validate_size(height, width, max_area=max_area)


@dataclass
class CallInputs:
    """The checked inputs that every Lens pipeline call shares: text, steps, batch and callback."""

    prompts: list[str] | None  # None when prompt_embeds are given
    negatives: list[str] | None
    prompt_embeds: Tensor | None
    prompt_mask: Tensor | None
    negative_prompt_embeds: Tensor | None
    negative_prompt_mask: Tensor | None
    rows: int  # prompts, or rows of prompt_embeds
    n: int  # images per prompt
    steps: int
    output_type: str
    callback: Callable | None
    tensor_inputs: list[str]
    max_sequence_length: int
    grounding: list | None = None  # per prompt [(phrase, (x, y)), ...] or None (`lens.text.grounding`)

    @property
    def batch(self) -> int:
        return self.rows * self.n


def check_call(
    prompt,
    negative_prompt,
    embeds: tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None],
    steps,
    num_images_per_prompt,
    output_type,
    callback,
    tensor_inputs,
    max_sequence_length: int,
    *,
    embeds_shape: tuple[int, int],
    default_steps: int,
) -> CallInputs:
    """Every shared check, in order: callback tensors, text (prompt or the four embedding tensors
    `embeds`, of (L, D) = embeds_shape), steps (None: `default_steps`), batch and output type."""
    if isinstance(callback, (PipelineCallback, MultiPipelineCallbacks)):
        tensor_inputs = callback.tensor_inputs
    names = check_callback_inputs(tensor_inputs)
    prompts, negatives, rows = check_text_inputs(prompt, negative_prompt, *embeds, embeds_shape=embeds_shape)
    steps = default_steps if steps is None else steps
    check_steps(steps, num_images_per_prompt, output_type)
    return CallInputs(
        prompts, negatives, *embeds, rows=rows, n=num_images_per_prompt, steps=steps,
        output_type=output_type, callback=callback, tensor_inputs=names,
        max_sequence_length=max_sequence_length,
    )  # fmt: skip


def check_grounding(grounding, prompts: list[str] | None) -> list | None:
    """`grounding` as one entry per prompt ([(phrase, (x, y)), ...] or None), each phrase found in its
    prompt (`lens.text.grounding.phrase_spans`); a single prompt's list may be given unwrapped."""
    if grounding is None:
        return None
    if prompts is None:
        raise LensError(
            "grounding needs the prompts as text, not prompt_embeds: its phrases are found in them"
        )
    if not isinstance(grounding, (list, tuple)):
        raise LensError("grounding must be a list of (phrase, (x, y)) pairs per prompt")
    first = grounding[0] if grounding else None
    if (
        len(prompts) == 1
        and isinstance(first, (list, tuple))
        and len(first) == 2
        and isinstance(first[0], str)
    ):
        grounding = [grounding]  # one prompt's pairs, unwrapped
    if len(grounding) != len(prompts):
        raise LensError(
            f"grounding has {len(grounding)} entries for {len(prompts)} prompts: give one list of "
            "(phrase, (x, y)) pairs per prompt (None for a prompt without)"
        )
    for prompt, phrases in zip(prompts, grounding):
        if phrases is not None:
            phrase_spans(prompt, phrases)
    return list(grounding)
