"""The colour-word share: how much of a colour token's projected text feature its colour word decides.

The nano LM's residual streams share a large common part: swapping "brown" for "red" changes only a
few per cent of the colour token's energy, and a small denoiser trained on such features ignores the
colour word (issue 12). `colour_word_share(encode, embed, probes)`: held-out probe scenes are
captioned once per chromatic colour of their first object, in the probe's caption style (the
captions differ only in that colour word); the denoiser's projected text feature `embed(...)`
(txt_norm + txt_in) at the first token where they differ is split into its mean over colours and the
rest. share = E||p_c - mean_c p||^2 / E||p_c||^2: 0 = the colour word changes nothing, ~1 = the token
is all colour. Averaged over scenes. `pipeline_colour_share(pipe)` measures it for a LensPipeline
(`lens eval colour-share`), the `colour-share` hook during training. The remedy the nano preset uses,
whitening folded into `txt_in`, is `lens.train.denoiser.fold_whitening`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from lens.errors import LensError
from lens.research.probes import ProbeScene, probe_scenes
from lens.world.captions import dense_caption
from lens.world.vocab import CHROMATIC, COLORS

# captions -> (features (B, S, L, D), mask (B, S) bool), as `LensPipeline.encode_prompt`
Encode = Callable[[list[str]], tuple[Tensor, Tensor]]
# features (B, S, L, D) -> projected text tokens (B, S, width), as `LensTransformer2DModel.embed_text`
Embed = Callable[[Tensor], Tensor]
RELATIVE_CHANGE = 1e-4  # a token "differs" between variants when its features move by more than this


def colour_variants(probe: ProbeScene) -> list[str]:
    """The probe's caption once per chromatic colour of its first object (same phrasing seed and style)."""
    obj = probe.scene.objects[0]
    out = []
    for colour in CHROMATIC:
        recoloured = dataclasses.replace(obj, color=colour, rgb=COLORS[colour])
        scene = dataclasses.replace(probe.scene, objects=[recoloured, *probe.scene.objects[1:]])
        out.append(dense_caption(scene, probe.seed, style=probe.style))
    return out


def _share_at_first_difference(feats: Tensor, mask: Tensor, projected: Tensor) -> float | None:
    """feats (C, S, L, D) of C variants; the share at the first token whose features differ (the
    colour word: the variants agree before it; after it, referring phrases may differ in length)."""
    base = feats[0].flatten(1)  # (S, L*D)
    moved = (feats.flatten(2) - base).norm(dim=-1).amax(0) > RELATIVE_CHANGE * base.norm(dim=-1)  # (S,)
    where = torch.nonzero(moved & mask.all(0))
    if len(where) == 0:
        return None
    p = projected[:, int(where[0])].double()  # (C, width)
    return float((p - p.mean(0)).pow(2).sum(-1).mean() / p.pow(2).sum(-1).mean())


@torch.no_grad()
def colour_word_share(encode: Encode, embed: Embed, probes: Sequence[ProbeScene]) -> dict[str, float]:
    """{"share": mean over probe scenes, "n": scenes scored} (see the module docstring)."""
    shares = []
    for probe in probes:
        feats, mask = encode(colour_variants(probe))
        share = _share_at_first_difference(feats.float(), mask, embed(feats).float())
        if share is not None:
            shares.append(share)
    if not shares:
        raise LensError(f"none of the {len(probes)} probe captions has a one-token colour word to swap")
    return {"share": sum(shares) / len(shares), "n": len(shares)}


def pipeline_colour_share(pipe, scenes: int = 32, style: str = "compact") -> dict[str, float]:
    """`colour_word_share` of a LensPipeline's text features after its transformer's txt_in, on
    `scenes` probe scenes (1-4 objects, as the training hook) captioned in `style`."""
    probes = probe_scenes(scenes, style=style)
    return colour_word_share(pipe.encode_prompt, pipe.transformer.embed_text, probes)
