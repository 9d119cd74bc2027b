"""Lens: an open, end-to-end implementation of Microsoft's Lens text-to-image recipe.

Public names are imported lazily so that `import lens` (and the CLI) stay fast; touching
`lens.LensPipeline` (or `LensImg2ImgPipeline`, `LensInpaintPipeline`) or `lens.LensTransformer2DModel`
imports torch/diffusers. `import lens` alone already lets `DiffusionPipeline.from_pretrained` resolve
the released `model_index.json` names: `lens.registration` gives diffusers a lazy hook for them
without importing it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from lens import registration

__version__ = "0.1.0"

_LAZY = {
    "LensTransformer2DModel": "lens.model.transformer",
    "LensPipeline": "lens.pipeline",
    "LensImg2ImgPipeline": "lens.img2img",
    "LensInpaintPipeline": "lens.inpaint",
    "LensGptOssEncoder": "lens.text.encoder",
    "LensError": "lens.errors",
}

__all__ = [
    "LensError",
    "LensGptOssEncoder",
    "LensImg2ImgPipeline",
    "LensInpaintPipeline",
    "LensPipeline",
    "LensTransformer2DModel",
]

if TYPE_CHECKING:  # pragma: no cover
    from lens.errors import LensError
    from lens.img2img import LensImg2ImgPipeline
    from lens.inpaint import LensInpaintPipeline
    from lens.model.transformer import LensTransformer2DModel
    from lens.pipeline import LensPipeline
    from lens.text.encoder import LensGptOssEncoder

registration.install()


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lens' has no attribute {name!r}")
