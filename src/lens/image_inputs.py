"""What image-to-image and inpainting take besides text: the init image, the mask and `strength`,
checked before any model runs (a LensError that says how to fix the call), and the tensors they become.

diffusers' conventions: an image is a PIL image, a (H, W, 3) / (B, H, W, 3) numpy array in [0, 1], a
(3, H, W) / (B, 3, H, W) tensor in [0, 1], or a list of them; one image serves every prompt, or there
is one per prompt. A mask is white (1) where to repaint and black (0) where to keep, binarised at 0.5
and resized to the image; a latent token (16x16 pixels) is repainted when any of its pixels is.
`strength` enters the schedule as diffusers' img2img does (`first_step`).
"""

from __future__ import annotations

import io
import numbers
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from torch import Tensor

from lens.errors import LensError
from lens.latents import LATENT_CHANNELS, to_tokens
from lens.resolution import PATCH_PIXELS, validate_size

IMG2IMG_STRENGTH = 0.6  # diffusers' FLUX img2img default: the layout stays, the detail is redrawn
INPAINT_STRENGTH = 1.0  # the masked area is drawn from pure noise; the rest is the image
IMAGE_TYPES = (
    "a PIL image, a (H, W, 3) numpy array or a (3, H, W) tensor in [0, 1], a batch of them, or a list"
)


def check_strength(strength, name: str = "strength") -> float:
    """strength in (0, 1]: 1 redraws from pure noise (text-to-image), small values keep the image."""
    ok = isinstance(strength, numbers.Real) and not isinstance(strength, bool) and 0 < strength <= 1
    if not ok:  # (nan fails the comparison too)
        raise LensError(
            f"{name} must be a number in (0, 1] (1 redraws from pure noise, smaller keeps more of "
            f"the image), got {strength!r}"
        )
    return float(strength)


def first_step(steps: int, strength: float) -> int:
    """Index of the first of the `steps` Euler steps to run, diffusers' img2img convention:
    init_timestep = min(steps * strength, steps), start = int(max(steps - init_timestep, 0))."""
    start = int(max(steps - min(steps * strength, steps), 0))
    if start >= steps:
        raise LensError(
            f"strength={strength} leaves none of the {steps} steps to run; raise strength or "
            "num_inference_steps"
        )
    return start


def image_size(image) -> tuple[int, int]:
    """(height, width) of an image input (the first one of a list), before any resizing."""
    first = image[0] if isinstance(image, list | tuple) and image else image
    if isinstance(first, PIL.Image.Image):
        return first.height, first.width
    if isinstance(first, np.ndarray) and first.ndim in (3, 4):
        return int(first.shape[-3]), int(first.shape[-2])  # (..., H, W, C)
    if isinstance(first, Tensor) and first.ndim in (3, 4):
        return int(first.shape[-2]), int(first.shape[-1])  # (..., C, H, W)
    got = type(first).__name__ if not hasattr(first, "shape") else f"shape {tuple(first.shape)}"
    raise LensError(f"image must be {IMAGE_TYPES}; got {got} (open files with PIL.Image.open)")


def check_image_size(
    height: int, width: int, max_area: int, fix: str, what: str = "the image"
) -> tuple[int, int]:
    """An image's own size as the output size: multiples of 16 within max_area, or a LensError + `fix`."""
    try:
        return validate_size(height, width, max_area=max_area)
    except LensError as err:
        raise LensError(f"{what} is {height}x{width} (HxW): {err}; {fix}") from None


def output_size(image, height, width, max_area: int) -> tuple[int, int]:
    """The size to generate: height x width (the image is resized to it), else the image's own."""
    if image is None:
        raise LensError(f"image is required: the picture to start from ({IMAGE_TYPES})")
    image_h, image_w = image_size(image)
    if height is None and width is None:
        return check_image_size(image_h, image_w, max_area, "or pass height and width to resize it")
    if height is None or width is None:
        raise LensError("pass both height and width (the image is resized to them), or neither")
    return validate_size(height, width, max_area=max_area)


def _per_row(x: Tensor, rows: int, what: str) -> Tensor:
    if x.shape[0] not in (1, rows):
        raise LensError(f"{what} holds {x.shape[0]} images for {rows} prompts; pass one, or one per prompt")
    return x


def _preprocess(processor, image, size: tuple[int, int], what: str) -> Tensor:
    try:
        return processor.preprocess(image, *size).float()
    except (ValueError, TypeError) as err:
        raise LensError(f"{what}: {str(err).splitlines()[0]}") from None


def prepare_image(image, size: tuple[int, int], rows: int) -> Tensor:
    """(B, 3, H, W) pixels in [-1, 1] at `size` (from `output_size`), B = 1 or `rows`."""
    from diffusers.image_processor import VaeImageProcessor

    processor = VaeImageProcessor(
        vae_scale_factor=PATCH_PIXELS, vae_latent_channels=LATENT_CHANNELS, do_convert_rgb=True
    )
    pixels = _preprocess(processor, image, size, "image")
    if pixels.ndim != 4 or pixels.shape[1] != 3:
        raise LensError(f"image must be RGB ({IMAGE_TYPES}); got {pixels.shape[1]} channels")
    return _per_row(pixels, rows, "image")


def prepare_mask(mask_image, size: tuple[int, int], rows: int) -> Tensor:
    """(B, h*w, 1) float32 token mask, 1 = repaint: binarised at 0.5, resized to `size`, then a token
    is repainted when any of its 16x16 pixels is (so no white pixel is left unpainted)."""
    from diffusers.image_processor import VaeImageProcessor

    if mask_image is None:
        raise LensError(
            "mask_image is required: white where to repaint, black where to keep "
            "(LensImg2ImgPipeline redraws the whole image)"
        )
    processor = VaeImageProcessor(
        vae_scale_factor=PATCH_PIXELS,
        vae_latent_channels=LATENT_CHANNELS,
        do_normalize=False,
        do_binarize=True,
        do_convert_grayscale=True,
    )
    mask = _preprocess(processor, mask_image, size, "mask_image")  # (B, 1, H, W) in {0, 1}
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise LensError(
            "mask_image must be one channel: a PIL image, or a (H, W) / (B, H, W) array or tensor in "
            f"[0, 1]; got shape {tuple(mask.shape)}"
        )
    tokens = to_tokens(torch.nn.functional.max_pool2d(mask, PATCH_PIXELS))  # (B, h*w, 1)
    return _per_row(tokens, rows, "mask_image")


def open_image(source: str | Path | bytes, what: str, max_pixels: int | None = None) -> PIL.Image.Image:
    """A decoded PIL image from a path or bytes, or a one-line LensError that starts with `what`."""
    name = "" if isinstance(source, bytes) else f" {source}"
    try:
        image = PIL.Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        if max_pixels is not None and image.width * image.height > max_pixels:
            raise LensError(
                f"{what}{name} is {image.width}x{image.height} pixels, more than the {max_pixels:,} "
                "accepted; send a smaller image"
            )
        image.load()
    except FileNotFoundError:
        raise LensError(f"{what}{name}: no such file") from None
    except IsADirectoryError:
        raise LensError(f"{what}{name} is a folder; pass an image file") from None
    except PIL.UnidentifiedImageError:
        raise LensError(f"{what}{name}: not an image file Pillow can read (PNG, JPEG, WebP, ...)") from None
    except (PIL.Image.DecompressionBombError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LensError(f"{what}{name}: cannot read the image ({reason})") from None
    return image


def check_mask_size(image: PIL.Image.Image, mask: PIL.Image.Image, fix: str) -> None:
    """A mask must cover its image exactly."""
    if mask.size != image.size:
        got, want = f"{mask.height}x{mask.width}", f"{image.height}x{image.width}"
        raise LensError(f"the mask is {got} but the image is {want} (HxW); {fix}")
