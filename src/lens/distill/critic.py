"""The discriminator: a small trained head on the frozen teacher's features of a noised image.

The teacher reads x_t (with the prompt, at its noise level) and forward hooks keep the image stream's
hidden states after the chosen blocks; the hook on the deepest one stops the forward, so the blocks
after it, the output norm and projection never run (`lens.text.features` does the same for the LM).
The head turns each block's (B, N, D) states into one logit per sample: RMSNorm, Linear(D, hidden),
SiLU, Linear(hidden, 1) per token, mean over tokens, summed over blocks. Gradients reach the input
through the frozen teacher when the caller needs them (the student's adversarial term).
"""

from __future__ import annotations

import contextlib

from torch import Tensor, nn

from lens.errors import LensError
from lens.sampling.euler import mask_or_none


class _Stop(Exception):
    """Raised by the hook on the deepest block read: the rest of the forward is skipped."""


def feature_blocks(blocks: tuple[int, ...], depth: int) -> list[int]:
    """The blocks to read: `blocks`, or the last block of each quarter of `depth`; checked."""
    chosen = sorted(set(blocks or (max(0, depth * k // 4 - 1) for k in range(1, 5))))
    if chosen[-1] >= depth:
        raise LensError(f"adversarial.blocks={list(blocks)}: the teacher has {depth} blocks (0..{depth - 1})")
    return chosen


class FeatureHead(nn.Module):
    def __init__(self, dim: int, n_blocks: int, hidden: int):
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.RMSNorm(dim), nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, 1))
            for _ in range(n_blocks)
        )

    def forward(self, features: list[Tensor]) -> Tensor:
        """One (B, N, D) tensor per block -> (B,) float32 logits."""
        return sum(head(f.float()).mean(dim=(1, 2)) for head, f in zip(self.heads, features))


def teacher_features(
    teacher,
    blocks: list[int],
    x_t: Tensor,
    sigma: Tensor,
    text: Tensor,
    mask: Tensor | None,
    grid: tuple[int, int],
    autocast: contextlib.AbstractContextManager | None = None,
    places: Tensor | None = None,
) -> list[Tensor]:
    """The image stream after each of `blocks` for x_t (B, N, C) at noise levels sigma (B,);
    `places` (B, S, 2): the text's grounded places, for a grounded teacher."""
    captured: dict[int, Tensor] = {}
    last = blocks[-1]

    def hook_for(i: int):
        def hook(module, args, output):
            captured[i] = output[0]  # (img, txt) -> img (B, N, D)
            if i == last:
                raise _Stop

        return hook

    layers = teacher.transformer_blocks
    handles = [layers[i].register_forward_hook(hook_for(i)) for i in blocks]
    try:
        with autocast if autocast is not None else contextlib.nullcontext():
            teacher(
                x_t, text, sigma.to(x_t), image_grid=grid, encoder_attention_mask=mask_or_none(mask),
                encoder_places=places,
            )  # fmt: skip
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return [captured[i] for i in blocks]
