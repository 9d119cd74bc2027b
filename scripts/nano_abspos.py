"""Experiment only (not Lens): image tokens get a fixed 2-D sincos position embedding on top of RoPE.

Lens gives the denoiser positions through RoPE alone (REFERENCE 3). This wrapper adds a parameter-free
sincos embedding of each image token's centred (row, column) to the output of `img_in`, so the state
dict, checkpoints and exports are unchanged; read such weights through the wrapper again. Used by
docs/nano-experiments.md (fifth session) to ask whether absolute positions help a small model read
the objects in its caption.

    python scripts/nano_abspos.py lens train nano --run-dir R ...
    python scripts/nano_abspos.py scripts/nano_binding.py PIPELINE ...
"""

from __future__ import annotations

import math
import runpy
import sys
import weakref

import torch

from lens.model.transformer import LensTransformer2DModel


def sincos_2d(h: int, w: int, dim: int, device) -> torch.Tensor:
    """(h*w, dim): sin/cos of the centred row index in the first half, of the column in the second."""
    rows = torch.arange(h, device=device) - (h - h // 2)  # centred as the RoPE indices are
    cols = torch.arange(w, device=device) - (w - w // 2)
    quarter = dim // 4
    freqs = torch.exp(-math.log(100.0) * torch.arange(quarter, device=device) / quarter)  # periods 2pi..200pi
    r, c = rows[:, None] * freqs, cols[:, None] * freqs  # (h, q), (w, q)
    er = torch.cat([r.sin(), r.cos()], -1)[:, None, :].expand(h, w, 2 * quarter)
    ec = torch.cat([c.sin(), c.cos()], -1)[None, :, :].expand(h, w, 2 * quarter)
    return torch.cat([er, ec], -1).reshape(h * w, 4 * quarter)


def _add_positions(module, args, out):
    h, w = module.owner().abs_grid
    return out + sincos_2d(h, w, out.shape[-1], out.device).to(out.dtype)


_forward = LensTransformer2DModel.forward


def forward(self, hidden_states, encoder_hidden_states, timestep, image_grid=None, **kwargs):
    if kwargs.get("pack") is not None:
        raise NotImplementedError("the position-embedding experiment supports bucket batches only")
    self.abs_grid = tuple(image_grid)
    if not getattr(self, "abs_hooked", False):  # lazily: diffusers' from_config inspects __init__
        self.img_in.owner = weakref.ref(self)
        self.img_in.register_forward_hook(_add_positions)
        self.abs_hooked = True
    return _forward(self, hidden_states, encoder_hidden_states, timestep, image_grid=image_grid, **kwargs)


LensTransformer2DModel.forward = forward

if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    if sys.argv[1] == "lens":
        from lens.cli import main

        sys.argv = sys.argv[1:]
        sys.exit(main())
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
