"""Flow-matching objective: velocity target, sigma means, and packed == bucketed on the same samples."""

import pytest
import torch

from lens.train.batches import assemble
from lens.train.config import ObjectiveConfig
from lens.train.objective import draw_noise, flow_matching_loss, sigma_means, step_generator
from tests.conftest import TINY_DENOISER


def _samples(n=3, grid=(4, 4), lengths=(5, 0, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = [torch.randn(128, *grid, generator=g) for _ in range(n)]
    texts = [torch.randn(s, 2, 24, generator=g) for s in lengths]
    return latents, texts


def test_sigma_means_follow_the_token_rule_or_a_fixed_value():
    means = sigma_means(ObjectiveConfig(), [64, 256, 1024, 4096, 9000])
    assert torch.allclose(means, torch.tensor([1.0, 1.0, 1.06, 1.3, 1.3]))
    assert torch.equal(sigma_means(ObjectiveConfig(logit_mean=0.5), [64, 4096]), torch.tensor([0.5, 0.5]))


def test_the_target_is_noise_minus_x0():
    latents, texts = _samples()
    inputs = assemble(latents, texts, packed=False)
    sigmas, noise = draw_noise(ObjectiveConfig(), inputs, step_generator(0, 0, 0, 0))
    x0 = inputs.x0

    class Oracle(torch.nn.Module):  # recovers v = noise - x0 from x_t and sigma
        def forward(self, x_t, text, sigma, **_):
            s = sigma[:, None, None]
            return type("Out", (), {"sample": (x_t - x0) / s})()  # noise - x0 = (x_t - x0) / sigma

    assert float(flow_matching_loss(Oracle(), inputs, sigmas, noise)) < 1e-8


def test_noise_draws_do_not_depend_on_the_layout():
    latents, texts = _samples(grid=(2, 3))
    a = assemble(latents, texts, packed=False)
    b = assemble(latents, texts, packed=True)
    sa, na = draw_noise(ObjectiveConfig(), a, step_generator(1, 2, 3, 4))
    sb, nb = draw_noise(ObjectiveConfig(), b, step_generator(1, 2, 3, 4))
    assert torch.equal(sa, sb) and torch.equal(na.reshape(-1, 128), nb[0])
    assert not torch.equal(sa, draw_noise(ObjectiveConfig(), a, step_generator(1, 3, 3, 4))[0])


@pytest.mark.parametrize("lengths", [(5, 0, 3), (4, 4, 4)])
def test_packed_and_bucketed_batches_give_the_same_loss_and_gradients(lengths):
    from lens.model.transformer import LensTransformer2DModel

    torch.manual_seed(0)
    model = LensTransformer2DModel(**TINY_DENOISER)
    latents, texts = _samples(lengths=lengths)
    results = []
    for packed in (False, True):
        inputs = assemble(latents, texts, packed=packed)
        assert (inputs.pack is not None) == packed
        sigmas, noise = draw_noise(ObjectiveConfig(), inputs, step_generator(0, 7, 0, 0))
        model.zero_grad()
        loss = flow_matching_loss(model, inputs, sigmas, noise)
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((loss.detach(), grads))
    (la, ga), (lb, gb) = results
    assert torch.allclose(la, lb, rtol=1e-5, atol=1e-6)
    assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-6)


def test_bucket_batches_mask_padded_text_and_count_padding():
    latents, texts = _samples(lengths=(5, 0, 3))
    inputs = assemble(latents, texts, packed=False)
    assert inputs.text.shape == (3, 5, 2, 24) and inputs.text_mask.sum(1).tolist() == [5, 0, 3]
    assert inputs.padding_tokens == 7 and assemble(latents, texts, packed=True).padding_tokens == 0
    same = assemble(*_samples(lengths=(4, 4, 4)), packed=False)
    assert same.text_mask is None  # nothing padded: unmasked (fused) attention
