"""Periodic sample grids for fixed prompts and seeds, so runs can be compared by eye over time.

Sampling goes through the pipeline's own loop (`lens.sampling.euler.euler_sample`: shifted schedule,
CFG with norm rescaling, zero-token unconditional branch), driven with the training model directly:
under FSDP every rank runs the denoiser (its forward is collective) and rank 0 writes
RUN_DIR/samples/step_XXXXXXXX.png.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from lens.latents import from_tokens
from lens.sampling.euler import Conditions, denoiser_velocity, euler_sample
from lens.sampling.schedule import make_scheduler, scheduler_sigmas
from lens.text.grounding import pad_places


def pad_texts(texts: list[Tensor]) -> tuple[Tensor, Tensor]:
    """(S_i, L, D) per prompt -> right-padded (P, S, L, D) features and their (P, S) bool mask."""
    width = max(t.shape[0] for t in texts)
    text = texts[0].new_zeros(len(texts), width, *texts[0].shape[1:])  # (P, S, L, D)
    mask = torch.zeros(len(texts), width, dtype=torch.bool, device=text.device)
    for i, t in enumerate(texts):
        text[i, : t.shape[0]], mask[i, : t.shape[0]] = t, True
    return text, mask


@torch.no_grad()
def sample_latents(
    model,
    texts: list[Tensor],
    grid: tuple[int, int],
    steps: int,
    guidance: float,
    seed: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    scheduler=None,
    places: list[Tensor] | None = None,
) -> Tensor:
    """texts: (S_i, L, D) per prompt -> (P, 128, h, w) latents. `scheduler`: the one whose steps to
    run (a distilled student's, `lens.sampling.schedule.with_fixed_sigmas`); default `make_scheduler()`.
    `places`: (S_i, 2) grounded places per prompt (`lens.text.grounding`), for a grounded model."""
    h, w = grid
    text, mask = pad_texts(texts)
    padded = None if places is None else pad_places(places, text.shape[1])
    padded = None if padded is None else padded.to(device)
    null = text[:, :0]  # (P, 0, L, D): zero text tokens
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(texts), h * w, 128, generator=gen).to(device)  # (P, N, 128)
    scheduler = make_scheduler() if scheduler is None else scheduler
    scheduler_sigmas(scheduler, steps, h * w, device=device)
    autocast = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)

    def velocity(latents: Tensor, embeds: Tensor, m: Tensor | None, t: Tensor, places=None) -> Tensor:
        return denoiser_velocity(model, latents, embeds, m, t, grid, autocast=autocast, places=places)

    x = euler_sample(velocity, x, scheduler, Conditions(text, mask, null, None, padded), guidance)
    return from_tokens(x, h, w)


def image_grid(images: Tensor, columns: int = 4) -> Image.Image:
    """(P, 3, H, W) in [0, 1] -> one RGB grid image."""
    p, _, h, w = images.shape
    cols = min(columns, p)
    rows = (p + cols - 1) // cols
    canvas = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    arr = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    for i in range(p):
        r, c = divmod(i, cols)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = arr[i]
    return Image.fromarray(canvas, "RGB")


def write_preview(run_dir: str | Path, step: int, images: Tensor, metrics, columns: int = 4) -> Path:
    """The grid of `images` at `step`: RUN_DIR/samples/step_XXXXXXXX.png and the metrics' `samples`
    image (TensorBoard); returns the file. `lens train`, `lens rl` and `lens distill` all write it."""
    out = Path(run_dir) / "samples"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"step_{step:08d}.png"
    grid = image_grid(images, columns)
    grid.save(path)
    metrics.image("samples", torch.from_numpy(np.array(grid)).permute(2, 0, 1), step)  # (3, H, W)
    return path
