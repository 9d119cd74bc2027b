"""The bundled Lens-Nano pipeline (src/lens/assets/lens-nano): loads, is small, deterministic and trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lens.eval.score import score_image
from lens.inference import BUNDLED_MODEL, load_pipeline
from lens.nano.bundle import folder_mb
from lens.world.geneval import make_metadata
from lens.world.reasoner import rewrite_prompt

NATIVE = 128

if not (BUNDLED_MODEL / "model_index.json").exists():
    pytest.skip(
        "no bundled Lens-Nano model in this checkout (src/lens/assets/lens-nano)", allow_module_level=True
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


def test_the_bundle_is_grounded():
    # trained with grounded compact captions (docs/nano-experiments.md, eleventh session)
    assert load_pipeline(None).transformer.config.text_grounding is True


@pytest.mark.parametrize("reasoner", [False, True])
def test_trained_model_draws_what_a_simple_prompt_asks(pipe, reasoner):
    # A random-weight denoiser gives coloured noise that the analyser never scores as one red circle.
    md = make_metadata("colors", [{"class": "circle", "count": 1, "color": "red"}])
    texts = [rewrite_prompt(md["prompt"], seed) if reasoner else md["prompt"] for seed in range(4)]
    images = pipe(texts, generator=torch.Generator().manual_seed(0)).images
    correct = [score_image(im, md)[0] for im in images]
    assert sum(correct) >= 2, correct


def test_the_reasoner_lays_out_for_the_bundles_objects(pipe):
    # The bundle trained on a world drawn at --object-scale 1.8 (its model_index.json says so); the
    # reasoner's layout for those sizes keeps counted objects apart (at the world's own sizes they
    # merge: Nano-Eval counting 0.23 against 0.78, docs/nano-experiments.md).
    from lens.inference import world_object_scale

    scale = world_object_scale(None)
    assert scale == pipe.config.world_object_scale == 1.8
    prompts = [
        make_metadata("counting", [{"class": c, "count": n}]) for c, n in (("circle", 2), ("heart", 4))
    ]
    texts = [rewrite_prompt(md["prompt"], seed, object_scale=scale) for md in prompts for seed in (0, 1)]
    images = pipe(texts, generator=torch.Generator().manual_seed(0)).images
    correct = [score_image(im, md)[0] for im, md in zip(images, [p for p in prompts for _ in (0, 1)])]
    assert sum(correct) >= 3, correct
