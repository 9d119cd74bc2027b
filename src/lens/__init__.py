"""Lens: an open, end-to-end implementation of Microsoft's Lens text-to-image recipe.

Public names are imported lazily so that `import lens` (and the CLI) stay fast; touching
`lens.LensPipeline` or `lens.LensTransformer2DModel` imports torch/diffusers and registers the Lens
classes under diffusers'/transformers' namespaces, so the released `model_index.json` resolves.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    "LensTransformer2DModel": "lens.model.transformer",
    "LensPipeline": "lens.pipeline",
    "LensGptOssEncoder": "lens.text.encoder",
    "LensError": "lens.errors",
}

__all__ = ["LensError", "LensGptOssEncoder", "LensPipeline", "LensTransformer2DModel"]

if TYPE_CHECKING:  # pragma: no cover
    from lens.errors import LensError
    from lens.model.transformer import LensTransformer2DModel
    from lens.pipeline import LensPipeline
    from lens.text.encoder import LensGptOssEncoder


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lens' has no attribute {name!r}")
