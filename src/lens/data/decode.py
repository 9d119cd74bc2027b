"""Decode any image file into a plain RGB picture, or say precisely why it cannot be.

Handles what web-scale folders contain: EXIF orientation, palette / CMYK / 16-bit / alpha modes,
embedded colour profiles, decompression bombs (a pixel limit checked on the header, before decoding),
truncated files and files that are not images. Failures raise `CorruptImage` with a short reason that
callers count; they are never fatal.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

# PIL's own bomb guard defaults to ~89.5 Mpx; ours is explicit and checked before any pixel is decoded.
DEFAULT_MAX_PIXELS = 100_000_000
REASONS = ("not_image", "truncated", "too_large", "unreadable")
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_SRGB = ImageCms.createProfile("sRGB")


class CorruptImage(Exception):
    """An input that does not decode to a usable image; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def decode(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_area: int | None = None):
    """bytes -> (RGB PIL image, info). `draft_area`: a JPEG may decode at 1/2, 1/4 or 1/8 scale if its
    area stays >= draft_area (DCT-domain scaling: several times faster, an antialiased downscale).

    info: format, mode, width, height (as stored, before orientation), orientation, alpha, icc.
    """
    if not data:
        raise CorruptImage("not_image", "empty file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as err:
            raise CorruptImage("too_large", str(err)) from None
        except UnidentifiedImageError:
            raise CorruptImage("not_image", "not a format Pillow can read") from None
        except Exception as err:  # broken headers raise anything from SyntaxError to struct.error
            raise CorruptImage("unreadable", f"{type(err).__name__}: {err}") from None
        w, h = im.size
        if w < 1 or h < 1:
            raise CorruptImage("unreadable", f"empty size {w}x{h}")
        if w * h > max_pixels:
            raise CorruptImage("too_large", f"{w}x{h} = {w * h:,} pixels > limit {max_pixels:,}")
        info = {"format": im.format, "mode": im.mode, "width": w, "height": h}
        if draft_area and im.format == "JPEG" and w * h > draft_area:
            s = (draft_area / (w * h)) ** 0.5
            im.draft("RGB", (math.ceil(w * s), math.ceil(h * s)))
        try:
            im.load()
        except Image.DecompressionBombError as err:
            raise CorruptImage("too_large", str(err)) from None
        except (OSError, EOFError) as err:
            reason = (
                "truncated" if "truncat" in str(err).lower() or isinstance(err, EOFError) else "unreadable"
            )
            raise CorruptImage(reason, str(err)) from None
        except Exception as err:
            raise CorruptImage("unreadable", f"{type(err).__name__}: {err}") from None
    try:
        return _to_rgb(im, info), info
    except CorruptImage:
        raise
    except Exception as err:
        raise CorruptImage("unreadable", f"{type(err).__name__}: {err}") from None


def _to_rgb(im: Image.Image, info: dict) -> Image.Image:
    info["orientation"] = 1
    try:
        info["orientation"] = int(im.getexif().get(0x0112, 1))
        if info["orientation"] != 1:  # exif_transpose would copy the pixels even when there is nothing to do
            im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block is not a broken image
        info["orientation"] = 1
    im = _apply_icc(im, info)
    mode = im.mode
    info["alpha"] = mode in _ALPHA_MODES or (mode == "P" and "transparency" in im.info)
    if info["alpha"]:
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))  # transparent -> white, as browsers show it
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(im), mode)).convert("RGB")
    return im if mode == "RGB" else im.convert("RGB")


def _to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """16-bit / 32-bit / float grey to 8 bits by scaling, not clipping (PIL's convert('L') clips)."""
    a = a.astype(np.float64)
    if mode == "F":
        scale = 255.0 if a.max(initial=0.0) <= 1.0 else 1.0
    else:
        scale = 1 / 257 if mode.startswith("I;16") or a.max(initial=0.0) > 255 else 1.0
    return np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)


def _apply_icc(im: Image.Image, info: dict) -> Image.Image:
    """Convert RGB/CMYK pixels with an embedded non-sRGB profile (Adobe RGB, Display P3, press CMYK)."""
    icc = im.info.get("icc_profile")
    info["icc"] = None
    if not icc or im.mode not in ("RGB", "CMYK"):
        return im
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = ImageCms.getProfileDescription(src).strip()
        info["icc"] = name
        if "srgb" in name.lower():
            return im
        return ImageCms.profileToProfile(im, src, _SRGB, outputMode="RGB")
    except Exception:
        return im  # an unreadable profile: keep the pixels as they are


def encode(im: Image.Image, fmt: str = "jpg", quality: int = 95) -> bytes:
    """RGB image -> bytes in 'jpg' | 'png' | 'webp', with no metadata (no EXIF GPS in training data)."""
    buf = io.BytesIO()
    if fmt == "jpg":
        im.save(buf, "JPEG", quality=quality)
    elif fmt == "png":
        im.save(buf, "PNG", compress_level=3)
    elif fmt == "webp":
        im.save(buf, "WEBP", quality=quality, method=4)
    else:
        raise ValueError(fmt)
    return buf.getvalue()
