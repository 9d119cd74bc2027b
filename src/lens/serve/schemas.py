"""Request bodies of `POST /v1/images/generations` -> a validated `GenerationRequest`.

OpenAI's fields (prompt, model, n, size "WxH" or "auto", response_format, user, ...) plus the
extensions other open servers of this API use under the same names (vLLM-Omni: negative_prompt, seed,
num_inference_steps, guidance_scale) and ours (aspect_ratio, resolution, reasoner, stream). Checks are
by hand rather than pydantic so that every 400 carries one line that says how to fix the request, the
same words as `lens generate` (the size, step and guidance messages come from the same functions).
"""

from __future__ import annotations

import random
import re
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

    def batch_key(self) -> tuple:
        """Requests with the same key run in one pipeline call (negatives and seeds are per row)."""
        return (self.height, self.width, self.steps, self.guidance)


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
    max_area: int = MAX_AREA,
) -> GenerationRequest:
    """Validate a request body; an ApiError (400, or 404 for another model) names the bad field.

    `reasoner`, when the server has one, is f(prompt, seed) -> caption; a request may turn it off
    with "reasoner": false.
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
    if model is not None and model != served_model:
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
    )
