"""`POST /v1/images/edits`: OpenAI's multipart edit request -> a validated `GenerationRequest` that the
image-to-image (no mask) or inpainting (mask) pipeline runs, through the same worker queue.

What we accept, OpenAI's way: `image` (one file, also as `image[]`; PNG, JPEG, WebP...: any image
Pillow reads, its alpha ignored), an optional `mask` of the image's size whose FULLY TRANSPARENT
pixels (alpha 0) are the area to edit (a mask without alpha is read as diffusers reads one: white =
edit), `prompt`, `n`, `size` ("auto", the default, is the image's own size, which must then be
multiples of 16; "WxH" resizes the image and mask to it), `response_format`, `stream`, and
`model`, `user`, `quality`, `background`, `input_fidelity`, `output_compression` (accepted,
ignored). Extensions as in generations (`negative_prompt`, `seed`, `num_inference_steps`,
`guidance_scale`, `reasoner`, `lora`, `lora_scale`) plus `strength` (default 1.0 with a mask: the
area is drawn anew; 0.6 without). Form fields arrive as text and are typed here before the generation
checks run.
"""

from __future__ import annotations

import dataclasses
import re
from contextlib import contextmanager

import python_multipart  # noqa: F401  (starlette's request.form() parses multipart with it: fail at start)
from starlette.requests import Request

from lens.errors import LensError
from lens.image_inputs import (
    IMG2IMG_STRENGTH,
    INPAINT_STRENGTH,
    check_image_size,
    check_mask_size,
    check_strength,
    open_image,
)
from lens.resolution import MAX_AREA
from lens.serve.errors import ApiError
from lens.serve.schemas import IGNORED, KNOWN, Defaults, GenerationRequest, parse_generation

MAX_UPLOAD_BYTES = 50 * 2**20  # OpenAI's limit per image
FILES = ("image", "image[]", "mask")
EDIT_ONLY = {"strength", "input_fidelity", "output_compression"}
FIELDS = (KNOWN - {"aspect_ratio", "resolution"}) | EDIT_ONLY  # the size comes from the image
_INTS = ("n", "seed", "num_inference_steps", "partial_images", "output_compression")
_FLOATS = ("guidance_scale", "strength", "lora_scale")
_BOOLS = ("stream", "reasoner")


def _bad(message: str, param: str | None) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value")


@contextmanager
def _field(param: str):
    """A LensError raised inside (the pipeline's own checks) becomes a 400 naming `param`."""
    try:
        yield
    except LensError as err:
        raise _bad(str(err), param) from None


async def read_form(request: Request) -> tuple[dict[str, str], dict[str, list[bytes]]]:
    """(text fields, uploaded files by field name) of a multipart/form-data request."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise _bad(
            "POST /v1/images/edits takes multipart/form-data (the image as a file upload, as OpenAI's "
            f"API does), got {content_type or 'no Content-Type'}",
            None,
        )
    fields: dict[str, str] = {}
    files: dict[str, list[bytes]] = {}
    async with request.form(max_files=8, max_fields=64) as form:
        for name, value in form.multi_items():
            if isinstance(value, str):
                if name in fields:
                    raise _bad(f"{name} is given twice", name)
                fields[name] = value
            elif (value.size or 0) > MAX_UPLOAD_BYTES:
                raise _bad(f"{name} is {value.size / 2**20:.0f} MB; send at most 50 MB", name)
            else:
                files.setdefault(name, []).append(await value.read())
    return fields, files


def _typed(name: str, value: str):
    """A form field's text as the JSON value the generation checks expect."""
    if name in _INTS:
        if not re.fullmatch(r"[+-]?\d+", value.strip()):
            raise _bad(f"{name} must be an integer, got {value!r}", name)
        return int(value)
    if name in _FLOATS:
        try:
            return float(value)
        except ValueError:
            raise _bad(f"{name} must be a number, got {value!r}", name) from None
    if name in _BOOLS:
        if value.lower() not in ("true", "false"):
            raise _bad(f"{name} must be true or false, got {value!r}", name)
        return value.lower() == "true"
    return value


def _one_file(files: dict[str, list[bytes]], fields: dict[str, str], names: tuple[str, ...]) -> bytes | None:
    uploads = [data for name in names for data in files.get(name, [])]
    if any(name in fields for name in names):
        raise _bad(f"{names[0]} must be an uploaded file (multipart), not a text field", names[0])
    if len(uploads) > 1:
        raise _bad(f"one {names[0]} per request: Lens edits a single image, got {len(uploads)}", names[0])
    return uploads[0] if uploads else None


def edit_area(mask):
    """OpenAI's mask (alpha 0 = edit) as the pipeline's: a PIL "L" image, white = repaint. Without an
    alpha channel, white (>= 128) is the area to edit, as diffusers reads masks."""
    if mask.has_transparency_data:
        return mask.convert("RGBA").getchannel("A").point(lambda a: 255 if a == 0 else 0)
    return mask.convert("L").point(lambda v: 255 if v >= 128 else 0)


def parse_edit(
    fields: dict[str, str],
    files: dict[str, list[bytes]],
    *,
    served_model: str,
    defaults: Defaults,
    reasoner=None,
    loras=(),
    max_area: int = MAX_AREA,
) -> GenerationRequest:
    """Validate an edit request (decoding its images); an ApiError (400) names the bad field."""
    unknown = sorted((set(fields) | set(files)) - FIELDS - set(FILES))
    if unknown:
        names = ", ".join(sorted((FIELDS - IGNORED) | {"image", "mask"}))
        raise _bad(f"unknown field {unknown[0]!r}; the fields are {names}", unknown[0])
    data = _one_file(files, fields, ("image", "image[]"))
    if data is None:
        raise _bad("image is required: upload the picture to edit as the multipart file field image", "image")
    mask_data = _one_file(files, fields, ("mask",))
    with _field("image"):
        image = open_image(data, "image", max_pixels=4 * max_area)
    mask = None
    if mask_data is not None:
        with _field("mask"):
            mask = open_image(mask_data, "mask", max_pixels=4 * max_area)
            check_mask_size(image, mask, "send a mask of the image's size")
    area = None if mask is None else edit_area(mask)
    if area is not None and area.getextrema()[1] == 0:
        raise _bad(
            "the mask marks nothing to edit: make the area to edit fully transparent (alpha 0), or "
            "white in a mask without alpha",
            "mask",
        )
    strength = fields.get("strength")
    with _field("strength"):
        default = IMG2IMG_STRENGTH if mask is None else INPAINT_STRENGTH
        strength = check_strength(default if strength is None else _typed("strength", strength))
    body = {k: _typed(k, v) for k, v in fields.items() if k not in EDIT_ONLY}
    height, width = image.height, image.width
    if (body.get("size") or "auto") == "auto":
        with _field("size"):
            fix = "or send size=WIDTHxHEIGHT (multiples of 16) to resize it"
            height, width = check_image_size(height, width, max_area, fix)
    req = parse_generation(  # the shared checks, then the reasoner (if any) rewrites the prompt
        body,
        served_model=served_model,
        defaults=dataclasses.replace(defaults, height=height, width=width),
        reasoner=reasoner,
        loras=loras,
        max_area=max_area,
    )
    return dataclasses.replace(req, image=image.convert("RGB"), mask=area, strength=strength)
