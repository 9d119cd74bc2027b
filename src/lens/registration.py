"""`import lens` teaches diffusers the released Lens class names without importing diffusers.

A released `model_index.json` names `("diffusers", "LensPipeline")` and `("diffusers",
"LensTransformer2DModel")`, and diffusers resolves them with `getattr(diffusers, name)`. Importing
`lens.pipeline` sets those attributes, but it costs seconds (torch, diffusers, transformers), far too
much for `import lens` and `lens --help`. So `install()` gives the diffusers module a PEP 562
`__getattr__` that imports the Lens class on first use: at once if diffusers is already imported,
otherwise right after diffusers finishes importing (a one-shot import hook). Importing
`lens.pipeline` also registers `LensGptOssEncoder` with transformers, and diffusers resolves the
pipeline class before it loads any component, so one hook on diffusers covers all three names.

Only the standard library is imported here.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

# Class name in a model_index.json -> the Lens module that defines (and registers) it.
DIFFUSERS_NAMES = {
    "LensPipeline": "lens.pipeline",
    "LensTransformer2DModel": "lens.pipeline",
    "LensImg2ImgPipeline": "lens.img2img",
    "LensInpaintPipeline": "lens.inpaint",
}


def _lens_attribute(name: str):
    """diffusers' module-level `__getattr__`: Lens names load lazily, anything else is not ours."""
    if name in DIFFUSERS_NAMES:
        return getattr(importlib.import_module(DIFFUSERS_NAMES[name]), name)
    # AttributeError hands the lookup on to diffusers' own lazy-module `__getattr__` (a class method,
    # which Python tries after the module's PEP 562 one fails).
    raise AttributeError(f"module 'diffusers' has no attribute {name!r}")


def _teach(module) -> None:
    module.__dict__.setdefault("__getattr__", _lens_attribute)


class _TeachAfterExec:
    """Wraps diffusers' own loader: runs it, then teaches the finished module the Lens names.
    (Loaders and finders are duck-typed; the importlib.abc bases would cost `import lens` 15 ms.)"""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # get_resource_reader, get_source, is_package...: the real loader's
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _teach(sys.modules[module.__name__])  # diffusers replaces itself with a lazy module object


class _DiffusersFinder:
    """Finds diffusers through the other finders once, and wraps its loader."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "diffusers":
            return None
        sys.meta_path.remove(self)  # one shot; also keeps the search below from finding us again
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _TeachAfterExec(spec.loader)
        return spec


def install() -> None:
    """Make `getattr(diffusers, "LensPipeline")` work from now on, importing nothing heavy."""
    if "diffusers" in sys.modules:
        _teach(sys.modules["diffusers"])
    elif not any(isinstance(f, _DiffusersFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _DiffusersFinder())
