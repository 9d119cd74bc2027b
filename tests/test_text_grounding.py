"""Grounded text positions (`encoder_places`): not in Lens, off by default, per sample in batches and packs."""

import math

import pytest
import torch

from lens.errors import LensError
from lens.model.layout import Pack
from lens.model.rope import grounded_text_positions, image_positions, text_positions

GRID = (4, 6)
S = 5


def _inputs(batch: int, grid=GRID, text: int = S, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, grid[0] * grid[1], 128, generator=g)
    enc = torch.randn(batch, text, 2, 24, generator=g)
    return x, enc, torch.rand(batch, generator=g)


def _places(batch: int, text: int = S) -> torch.Tensor:
    """Sample b grounds tokens 1..3 at one place, the others not at all."""
    places = torch.full((batch, text, 2), math.nan)
    for b in range(batch):
        places[b, 1:4] = torch.tensor([0.2 + 0.3 * b, 0.7 - 0.2 * b])
    return places


def test_a_grounded_token_sits_on_the_image_token_at_its_place():
    h, w = GRID
    img = image_positions(h, w)
    r, c = 2, 5  # token (row 2, column 5): its centre is at x = 5.5 / 6, y = 2.5 / 4
    places = torch.full((1, 3, 2), math.nan)
    places[0, 1] = torch.tensor([(c + 0.5) / w, (r + 0.5) / h])
    pos = grounded_text_positions(h, w, places)[0]
    plain = text_positions(h, w, 3)
    assert torch.equal(pos[1, 1:], img[r * w + c, 1:])  # row and column of that image token
    assert pos[1, 0] == plain[1, 0]  # the frame keeps the token's order
    assert torch.equal(pos[[0, 2]], plain[[0, 2]])  # ungrounded tokens where the released layout puts them


def test_no_places_is_the_released_layout_and_places_change_the_output(tiny_denoiser):
    x, enc, t = _inputs(2)
    with torch.no_grad():
        released = tiny_denoiser(x, enc, t, image_grid=GRID).sample
        none_grounded = tiny_denoiser(
            x, enc, t, image_grid=GRID, encoder_places=torch.full((2, S, 2), math.nan)
        ).sample
        grounded = tiny_denoiser(x, enc, t, image_grid=GRID, encoder_places=_places(2)).sample
    torch.testing.assert_close(none_grounded, released, rtol=1e-5, atol=1e-6)
    assert (grounded - released).abs().amax() > 1e-3


def test_places_are_per_sample_and_a_pack_agrees_with_the_padded_batch(tiny_denoiser):
    x, enc, t = _inputs(2)
    places = _places(2)
    with torch.no_grad():
        batch = tiny_denoiser(x, enc, t, image_grid=GRID, encoder_places=places).sample
        alone = tiny_denoiser(x[1:], enc[1:], t[1:], image_grid=GRID, encoder_places=places[1:]).sample
        pack = Pack(image_grids=(GRID, GRID), text_lengths=(S, S))
        packed = tiny_denoiser(
            x.reshape(1, -1, 128),
            enc.reshape(1, -1, 2, 24),
            t,
            pack=pack,
            attention_kernel="sdpa",
            encoder_places=places.reshape(1, -1, 2),
        ).sample
    torch.testing.assert_close(batch[1:], alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(packed.reshape(batch.shape), batch, rtol=1e-4, atol=1e-5)


def test_places_of_the_wrong_shape_or_in_pixels_are_refused(tiny_denoiser):
    x, enc, t = _inputs(1)
    with pytest.raises(LensError, match="encoder_places must be"):
        tiny_denoiser(x, enc, t, image_grid=GRID, encoder_places=torch.zeros(1, S - 1, 2))
    pixels = _places(1) * 64  # a place in pixels, not fractions of the image
    with pytest.raises(LensError, match=r"fractions of the image width and height in \[0, 1\]"):
        tiny_denoiser(x, enc, t, image_grid=GRID, encoder_places=pixels)
