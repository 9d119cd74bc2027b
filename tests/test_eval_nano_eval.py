"""`lens.eval.nano_eval.evaluate(generate)`: the training loop's entry to Nano-Eval."""

import numpy as np
import pytest
import torch

from lens.cli import main
from lens.errors import LensError
from lens.eval import nano_prompts
from lens.eval.nano_eval import evaluate, to_images
from lens.world import reason, render_scene, rewrite_prompt

PROMPTS = nano_prompts()[::4]  # every tag, 39 prompts


def perfect(texts, seed):
    """A text-to-image 'model' that reads the prompt and draws the world's scene for it."""
    return [render_scene(reason(t, seed)[1], 64, 96) for t in texts]


def test_perfect_generator_scores_high_and_folder_rescoring_agrees(tmp_path, capsys):
    scores = evaluate(perfect, PROMPTS, n_samples=1, batch_size=16, out_dir=str(tmp_path))
    assert scores["overall"] >= 0.97 and len(scores) == 7
    capsys.readouterr()
    assert main(["eval", "nano-score", str(tmp_path)]) == 0
    assert f"{scores['overall']:6.3f}" in capsys.readouterr().out.splitlines()[-1]
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == len(PROMPTS)


def test_tensor_batches_of_noise_score_low():
    def noise(texts, seed):
        return torch.rand(len(texts), 3, 64, 64, generator=torch.Generator().manual_seed(seed))

    assert evaluate(noise, PROMPTS, n_samples=1)["overall"] <= 0.05


def test_rewrite_feeds_the_reasoners_dense_captions():
    seen = []

    def spy(texts, seed):
        seen.extend(texts)
        return np.zeros((len(texts), 64, 64, 3), np.uint8)

    evaluate(spy, PROMPTS[:3], n_samples=1, rewrite=True)
    assert seen == [rewrite_prompt(md["prompt"]) for md in PROMPTS[:3]]


def test_bad_generator_output_raises_lens_error():
    with pytest.raises(LensError, match="one per prompt"):
        evaluate(lambda t, s: np.zeros((1, 64, 64, 3), np.uint8), PROMPTS[:3], n_samples=1)
    with pytest.raises(LensError, match="shape"):
        to_images(np.zeros((2, 64, 64), np.float32))
    assert to_images(np.ones((1, 3, 32, 48), np.float32))[0].size == (48, 32)
