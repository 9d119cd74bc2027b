"""Request bodies of `POST /v1/images/generations` -> a validated `GenerationRequest`.

OpenAI's fields (prompt, model, n, size "WxH" or "auto", response_format, user, ...) plus the
extensions other open servers of this API use under the same names (vLLM-Omni: negative_prompt, seed,
num_inference_steps, guidance_scale) and ours (aspect_ratio, resolution, reasoner, stream, lora,
lora_scale). Checks are by hand rather than pydantic so that every 400 carries one line that says how
to fix the request, the same words as `lens generate` (the size, step and guidance messages come from
the same functions). A `lora` names one of the adapters the server was started with, never a path.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Collection
from dataclasses import dataclass

from lens.cli.options import check_guidance
from lens.errors import LensError
from lens.resolution import MAX_AREA, preset, validate_size
from lens.serve.errors import ApiError

MAX_N = 10  # OpenAI's own limit for n
MAX_STEPS = 200  # one request must not hold the only worker for hours
MAX_SEED = 2**63 - 1
RESPONSE_FORMATS = ("b64_json", "url")
# OpenAI fields that change nothing here; accepted so unchanged clients keep working.
IGNORED = {"user", "quality", "style", "moderation", "background", "partial_images", "safety_identifier"}
KNOWN = IGNORED | {
    "prompt",
    "model",
    "n",
    "size",
    "response_format",
    "output_format",
    "negative_prompt",
    "seed",
    "num_inference_steps",
    "guidance_scale",
    "aspect_ratio",
    "resolution",
    "reasoner",
    "stream",
    "lora",
    "lora_scale",
}
_SIZE = re.compile(r"^(\d+)x(\d+)$")


@dataclass(frozen=True)
class Defaults:
    """What a request that says nothing gets: the pipeline's own defaults (model_index.json)."""

    height: int
    width: int
    steps: int
    guidance: float


@dataclass
class GenerationRequest:
    prompt: str  # what the client sent
    text: str  # what the model reads (the reasoner's caption, or the prompt)
    negative_prompt: str
    n: int
    height: int
    width: int
    steps: int
    guidance: float
    seed: int  # image k of the request uses seed + k, so each PNG says how to make it alone
    response_format: str
    stream: bool
    # POST /v1/images/edits (lens.serve.edits): the init image (PIL RGB), the mask (PIL "L", white =
    # repaint; None redraws the whole image) and the strength
    image: object = None
    mask: object = None
    strength: float | None = None
    # the LoRA adapter (one the server was started with, by name) and its scale; None: the base model
    lora: str | None = None
    lora_scale: float | None = None

    @property
    def kind(self) -> str:
        """Which pipeline runs it: "generation", "img2img" or "inpaint"."""
        if self.image is None:
            return "generation"
        return "img2img" if self.mask is None else "inpaint"

    def batch_key(self) -> tuple:
        """Requests with the same key run in one pipeline call (negatives, seeds, images are per row)."""
        size = (self.height, self.width)
        return (*size, self.steps, self.guidance, self.kind, self.strength, self.lora, self.lora_scale)


def _bad(message: str, param: str | None) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value")


def _int(body: dict, name: str, default, lo: int, hi: int, what: str):
    value = body.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(f"{name} must be an integer ({what}), got {value!r}", name)
    if not lo <= value <= hi:
        raise _bad(f"{name} must be between {lo} and {hi} ({what}), got {value}", name)
    return value


def _str(body: dict, name: str, default: str | None = None) -> str | None:
    value = body.get(name, default)
    if value is not None and not isinstance(value, str):
        raise _bad(f"{name} must be a string, got {type(value).__name__}", name)
    return value


def _lora(body: dict, loras: Collection[str], named_by_model: str | None) -> tuple[str | None, float | None]:
    """(adapter, scale) from lora (or a model naming an adapter, as vLLM selects them) and lora_scale.
    Only the server's own adapters can be named: a client never passes a path."""
    name = _str(body, "lora")
    if named_by_model is not None:
        if name not in (None, named_by_model):
            raise _bad(f"model names the adapter {named_by_model!r} but lora is {name!r}; send one", "lora")
        name = named_by_model
    scale = body.get("lora_scale")
    if name is None:
        if scale is not None:
            raise _bad("lora_scale needs lora: name one of the server's LoRA adapters", "lora_scale")
        return None, None
    if name not in loras:
        have = f"this server has {', '.join(sorted(loras))}" if loras else "this server has none"
        raise _bad(f"unknown LoRA adapter {name!r}; {have} (GET /v1/models lists them)", "lora")
    if scale is None:
        return name, 1.0
    if not isinstance(scale, int | float) or isinstance(scale, bool) or not math.isfinite(scale):
        what = "1 = full strength, 0 = the base model"
        raise _bad(f"lora_scale must be a finite number ({what}), got {scale!r}", "lora_scale")
    return name, float(scale)


def _size(body: dict, defaults: Defaults, max_area: int) -> tuple[int, int]:
    """(height, width) from size "WxH" / "auto", or the extension aspect_ratio (+ resolution)."""
    size = _str(body, "size", "auto") or "auto"
    aspect = _str(body, "aspect_ratio")
    resolution = _int(body, "resolution", 1024, 1024, 1440, "the preset base, 1024 or 1440")
    try:
        if aspect is not None:
            if size != "auto":
                raise _bad("pass either size or aspect_ratio, not both", "aspect_ratio")
            return preset(aspect, resolution)
        if size == "auto":
            return defaults.height, defaults.width
        match = _SIZE.match(size)
        if not match:
            raise _bad(
                f"size must be 'auto' or WIDTHxHEIGHT in pixels (multiples of 16), e.g. 1024x1024, got {size!r}",
                "size",
            )
        width, height = int(match[1]), int(match[2])
        return validate_size(height, width, max_area=max_area)
    except LensError as err:
        raise _bad(str(err), "aspect_ratio" if aspect is not None else "size") from None


def parse_generation(
    body,
    *,
    served_model: str,
    defaults: Defaults,
    reasoner=None,
    loras: Collection[str] = (),
    max_area: int = MAX_AREA,
) -> GenerationRequest:
    """Validate a request body; an ApiError (400, or 404 for another model) names the bad field.

    `reasoner`, when the server has one, is f(prompt, seed) -> caption; a request may turn it off
    with "reasoner": false. `loras` are the names of the server's LoRA adapters.
    """
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object", None)
    unknown = sorted(set(body) - KNOWN)
    if unknown:
        raise _bad(f"unknown field {unknown[0]!r}; the fields are {', '.join(sorted(KNOWN))}", unknown[0])
    prompt = _str(body, "prompt")
    if prompt is None:
        raise _bad("prompt is required: describe the image to generate", "prompt")
    if not prompt.strip():
        raise _bad("the prompt is empty; describe the image to generate", "prompt")
    model = _str(body, "model")
    if model is not None and model != served_model and model not in loras:
        raise ApiError(
            404,
            f"the model {model!r} is not served here; this server serves {served_model!r} (or omit model)",
            param="model",
            code="model_not_found",
        )
    fmt = _str(body, "response_format", "b64_json") or "b64_json"
    if fmt not in RESPONSE_FORMATS:
        raise _bad(f"response_format must be b64_json or url, got {fmt!r}", "response_format")
    if (_str(body, "output_format") or "png") != "png":
        raise _bad(
            f"output_format must be png (Lens writes PNG), got {body['output_format']!r}", "output_format"
        )
    lora, lora_scale = _lora(body, loras, model if model in loras else None)
    n = _int(body, "n", 1, 1, MAX_N, "images to generate")
    height, width = _size(body, defaults, max_area)
    steps = _int(body, "num_inference_steps", None, 1, MAX_STEPS, "Euler steps")
    steps = defaults.steps if steps is None else steps
    guidance = body.get("guidance_scale")
    if guidance is not None and (not isinstance(guidance, int | float) or isinstance(guidance, bool)):
        raise _bad(
            f"guidance_scale must be a number (e.g. 5, or 1 to turn CFG off), got {guidance!r}",
            "guidance_scale",
        )
    try:
        check_guidance("guidance_scale", guidance)  # JSON parsers accept NaN and Infinity
    except LensError as err:
        raise _bad(str(err), "guidance_scale") from None
    seed = _int(body, "seed", None, 0, MAX_SEED, "fixes the image")
    seed = random.randrange(2**31) if seed is None else seed
    negative = _str(body, "negative_prompt") or ""
    use_reasoner = body.get("reasoner")
    if use_reasoner is not None and not isinstance(use_reasoner, bool):
        raise _bad(f"reasoner must be true or false, got {use_reasoner!r}", "reasoner")
    if use_reasoner and reasoner is None:
        raise _bad("this server has no reasoner; start it with --reasoner nano", "reasoner")
    text = prompt
    if reasoner is not None and use_reasoner is not False:
        try:
            text = reasoner(prompt, seed)
        except LensError as err:
            raise _bad(
                f'{err}; or send "reasoner": false to give the model the prompt as it is', "prompt"
            ) from None
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad(f"stream must be true or false, got {stream!r}", "stream")
    return GenerationRequest(
        prompt=prompt,
        text=text,
        negative_prompt=negative,
        n=n,
        height=height,
        width=width,
        steps=steps,
        guidance=float(defaults.guidance if guidance is None else guidance),
        seed=seed,
        response_format=fmt,
        stream=stream,
        lora=lora,
        lora_scale=lora_scale,
    )
