"""The bundled Lens-Nano pipeline (src/lens/assets/lens-nano): loads, is small, deterministic and trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lens.eval.score import score_image
from lens.inference import BUNDLED_MODEL, load_pipeline
from lens.nano.bundle import folder_mb
from lens.world.geneval import make_metadata

NATIVE = 128

if not (BUNDLED_MODEL / "model_index.json").exists():
    pytest.skip(
        "no bundled Lens-Nano model in this checkout yet (docs/nano-experiments.md: the first 1000-step "
        "model was not good enough to ship)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline(None)


def test_bundle_is_a_small_complete_pipeline_folder():
    for name in ("model_index.json", "scheduler", "vae", "text_encoder", "tokenizer", "transformer"):
        assert (BUNDLED_MODEL / name).exists(), name
    assert folder_mb(BUNDLED_MODEL) <= 40.0


def test_defaults_are_the_nano_settings(pipe):
    cfg = pipe.config
    assert (cfg.default_height, cfg.default_width, cfg.default_steps) == (NATIVE, NATIVE, 20)
    assert cfg.default_guidance_scale > 1.0  # CFG on by default


def test_native_size_generation_is_deterministic_by_seed(pipe):
    def run(seed):
        out = pipe("a red circle above a blue square", num_inference_steps=4, output_type="np",
                   generator=torch.Generator().manual_seed(seed))  # fmt: skip
        return out.images[0]

    a, b, c = run(3), run(3), run(4)
    assert a.shape == (NATIVE, NATIVE, 3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.01


@pytest.mark.xfail(
    reason="the bundled 1000-step model scores 0/4 here (docs/nano-experiments.md); kept as the bar"
)
def test_trained_model_draws_what_a_simple_prompt_asks(pipe):
    # A random-weight denoiser gives coloured noise that the analyser never scores as one red circle.
    md = make_metadata("colors", [{"class": "circle", "count": 1, "color": "red"}])
    images = pipe([md["prompt"]] * 4, generator=torch.Generator().manual_seed(0)).images
    correct = [score_image(im, md)[0] for im in images]
    assert sum(correct) >= 2, correct
