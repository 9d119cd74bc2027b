"""Microbatch of samples -> denoiser inputs, as one bucket batch or as one packed sequence.

Per sample the inputs are latent tokens (N_i, 128) on an (h_i, w_i) grid and valid text features
(S_i, L, D) (S_i = 0 for the null condition). A bucket batch stacks same-grid samples and right-pads
text with a key mask; a pack concatenates everything into batch 1 and describes it with a `Pack`
(block-diagonal mask, per-sample RoPE and modulation inside the model).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lens.errors import LensError
from lens.latents import to_tokens
from lens.model.layout import Pack
from lens.text.grounding import pad_places
from lens.train.samples import Microbatch, to_pixels


@dataclass
class ModelInputs:
    x0: Tensor  # (B, N, 128) bucket batch, or (1, sum N_i, 128) pack
    text: Tensor  # (B, S, L, D), or (1, sum S_i, L, D)
    text_mask: Tensor | None  # (B, S) bool; None when no text is padded (and for packs)
    grid: tuple[int, int] | None  # bucket batch: the shared (h, w)
    pack: Pack | None
    grids: list[tuple[int, int]]  # per sample
    text_lengths: list[int]  # per sample (valid tokens)
    places: Tensor | None = None  # (B, S, 2) or (1, sum S_i, 2) grounded text places, NaN elsewhere

    @property
    def n_samples(self) -> int:
        return len(self.grids)

    @property
    def image_tokens(self) -> list[int]:
        return [h * w for h, w in self.grids]

    @property
    def padding_tokens(self) -> int:
        """Tokens computed but not belonging to any sample (text right-padding of a bucket batch)."""
        if self.pack is not None:
            return 0
        return self.text.shape[0] * self.text.shape[1] - sum(self.text_lengths)

    @property
    def computed_tokens(self) -> int:
        return self.x0.shape[0] * (self.x0.shape[1] + self.text.shape[1])


def _nan_filled(texts: list[Tensor], places: list[Tensor | None]) -> list[Tensor]:
    """Per sample (S_i, 2) places, NaN rows (not grounded) for samples without any."""
    return [p if p is not None else t.new_full((t.shape[0], 2), float("nan")) for t, p in zip(texts, places)]


def assemble(
    latents: list[Tensor], texts: list[Tensor], packed: bool, places: list[Tensor | None] | None = None
) -> ModelInputs:
    """latents: (128, h_i, w_i) per sample; texts: (S_i, L, D) per sample; places: (S_i, 2) grounded
    text places per sample (`lens.text.grounding`) or None."""
    grids = [(int(z.shape[1]), int(z.shape[2])) for z in latents]
    lengths = [int(t.shape[0]) for t in texts]
    tokens = [to_tokens(z[None])[0] for z in latents]  # (N_i, 128)
    if places is not None and all(p is None for p in places):
        places = None  # nothing grounded: the released layout
    if packed:
        return ModelInputs(
            x0=torch.cat(tokens)[None],
            text=torch.cat(texts)[None],
            text_mask=None,
            grid=None,
            pack=Pack(image_grids=tuple(grids), text_lengths=tuple(lengths)),
            grids=grids,
            text_lengths=lengths,
            places=None if places is None else torch.cat(_nan_filled(texts, places))[None],
        )
    if len(set(grids)) != 1:
        raise ValueError(f"a bucket batch needs one latent grid, got {sorted(set(grids))}")
    width = max(lengths)
    text = texts[0].new_zeros(len(texts), width, *texts[0].shape[1:])  # (B, S, L, D)
    mask = torch.zeros(len(texts), width, dtype=torch.bool, device=text.device)  # (B, S)
    for i, t in enumerate(texts):
        text[i, : t.shape[0]] = t
        mask[i, : t.shape[0]] = True
    return ModelInputs(
        x0=torch.stack(tokens),
        text=text,
        text_mask=None if bool(mask.all()) else mask,
        grid=grids[0],
        pack=None,
        grids=grids,
        text_lengths=lengths,
        places=None if places is None else pad_places(places, width).to(text.device),  # (B, S, 2)
    )


def encode_microbatch(mb: Microbatch, encoders, device: torch.device, grounded: bool = False) -> ModelInputs:
    """Run the frozen encoders where the shards hold raw images/captions; read features otherwise.
    `grounded`: also the captions' token places (`model.text_grounding`), from the features or the
    samples' spans."""
    samples = mb.samples
    features = samples[0].latent is not None
    if features and not encoders.text_trained:
        latents = [s.latent.to(device=device, dtype=torch.float32) for s in samples]
        texts = [
            s.text.to(device=device, dtype=torch.float32) if s.text is not None else encoders.null_text()
            for s in samples
        ]
        places = [
            s.places.to(device) if s.places is not None and s.text is not None else None for s in samples
        ]
        return assemble(latents, texts, mb.packed, places if grounded else None)
    if features:  # prepared latents, captions through the LM that trains
        missing = [s.key for s in samples if s.text is not None and s.caption is None]
        if missing:
            raise LensError(
                f"{missing[0]}: a run that trains its text encoder needs the caption text, which this "
                "feature shard's json lacks; prepare the features again or train on image shards"
            )
        latents = [s.latent.to(device=device, dtype=torch.float32) for s in samples]
    else:
        latents = [None] * len(samples)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, s in enumerate(samples):
            by_size.setdefault(s.pixels.shape[:2], []).append(i)
        for idx in by_size.values():  # the VAE runs once per distinct size
            z = encoders.encode_images(to_pixels([samples[i] for i in idx]))  # (b, 128, h, w)
            for j, i in enumerate(idx):
                latents[i] = z[j]
    with_caption = [i for i, s in enumerate(samples) if s.caption is not None]
    encoded = encoders.encode_text([samples[i].caption for i in with_caption])
    texts = [encoders.null_text()] * len(samples)
    for i, t in zip(with_caption, encoded):
        texts[i] = t
    places: list[Tensor | None] = [None] * len(samples)
    spanned = [i for i in with_caption if samples[i].spans] if grounded else []
    found = encoders.text_places([samples[i].caption for i in spanned], [samples[i].spans for i in spanned])
    for i, p in zip(spanned, found):
        places[i] = p
    return assemble(latents, texts, mb.packed, places)
