"""Memory levers on tiny pipelines (CPU): model CPU offload through accelerate's hooks, the latent
codec under a VAE hook, diffusers' group offload, float8 layerwise storage (`lens.memory`), and
`import lens` registering the released names."""

import copy
import os
import re
import subprocess
import sys

import pytest
import torch
from diffusers.hooks.group_offloading import ModuleGroup

from lens.latents import LatentCodec, tiny_flux2_vae
from lens.memory import FP8_SKIP_PATTERNS, enable_fp8_storage
from lens.testing import tiny_random_pipeline

OFFLOADED = ("text_encoder", "transformer", "vae")


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_model_cpu_offload_runs_every_model_through_its_hook():
    kw = dict(num_inference_steps=2, output_type="np", guidance_scale=3.0)
    reference = tiny_random_pipeline()("a blue cube", generator=_gen(1), **kw).images
    pipe = tiny_random_pipeline()
    pipe.enable_model_cpu_offload(device="cpu")
    loads = dict.fromkeys(OFFLOADED, 0)
    for name in OFFLOADED:  # count each hook's load: it is what moves the weights on a GPU
        hook = getattr(pipe, name)._hf_hook
        real = hook.pre_forward

        def counted(module, *args, _name=name, _real=real, **kwargs):
            loads[_name] += 1
            return _real(module, *args, **kwargs)

        hook.pre_forward = counted
    out = pipe("a blue cube", generator=_gen(1), **kw).images
    assert all(loads[name] > 0 for name in OFFLOADED), loads
    torch.testing.assert_close(torch.from_numpy(out), torch.from_numpy(reference), rtol=1e-5, atol=1e-6)


def test_codec_sends_latents_to_the_hooks_device_not_the_weights(monkeypatch):
    from accelerate import cpu_offload_with_hook

    vae = tiny_flux2_vae()
    latents = torch.randn(1, 128, 2, 2)
    expected = LatentCodec(vae).decode(latents)
    cpu_offload_with_hook(vae, execution_device="cpu")
    # Offloaded weights report another device than the one the hook will run them on.
    monkeypatch.setattr(type(vae), "device", property(lambda self: torch.device("meta")))
    torch.testing.assert_close(LatentCodec(vae).decode(latents), expected)


def test_float8_layerwise_storage_runs_close_to_float32():
    pipe = tiny_random_pipeline()
    kw = dict(num_inference_steps=2, output_type="latent", guidance_scale=3.0)
    reference = pipe("a red circle", generator=_gen(2), **kw).images
    pipe.transformer = copy.deepcopy(pipe.transformer)
    pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    assert pipe.transformer.img_in.weight.dtype == torch.float8_e4m3fn
    out = pipe("a red circle", generator=_gen(2), **kw).images
    assert out.dtype == torch.float32
    assert ((out - reference).norm() / reference.norm()).item() < 0.1


@pytest.mark.parametrize("offload_type", ["block_level", "leaf_level"])
def test_group_offload_onloads_every_model_and_matches_the_plain_run(monkeypatch, offload_type):
    kw = dict(num_inference_steps=2, output_type="np", guidance_scale=3.0)
    reference = tiny_random_pipeline()("a blue cube", generator=_gen(1), **kw).images
    pipe = tiny_random_pipeline()
    # On a GPU onload_device is the GPU; on CPU the hooks run all the same, moving nothing.
    pipe.enable_group_offload(
        onload_device=torch.device("cpu"), offload_type=offload_type, num_blocks_per_group=1
    )
    onloaded = set()
    real = ModuleGroup.onload_

    def counted(group):
        onloaded.update(id(p) for m in group.modules for p in m.parameters())
        onloaded.update(id(p) for p in group.parameters)
        return real(group)

    monkeypatch.setattr(ModuleGroup, "onload_", counted)
    out = pipe("a blue cube", generator=_gen(1), **kw).images
    for name in OFFLOADED:  # every model's weights went through an onload, all of the denoiser's
        params = [id(p) for p in getattr(pipe, name).parameters()]
        assert onloaded.intersection(params), name
    assert onloaded.issuperset(id(p) for p in pipe.transformer.parameters())
    torch.testing.assert_close(torch.from_numpy(out), torch.from_numpy(reference), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("compute_dtype", [torch.float32, torch.bfloat16])
def test_fp8_storage_keeps_modulation_norms_and_embeddings_in_the_compute_dtype(compute_dtype):
    pipe = tiny_random_pipeline()
    kw = dict(num_inference_steps=2, output_type="latent", guidance_scale=3.0)
    reference = pipe("a red circle", generator=_gen(2), **kw).images
    enable_fp8_storage(pipe.transformer, compute_dtype=compute_dtype)
    kept = set()
    for name, p in pipe.transformer.named_parameters():
        module = name.rsplit(".", 1)[0]
        if any(re.search(pattern, module) for pattern in FP8_SKIP_PATTERNS):
            kept.add(module)
            assert p.dtype == compute_dtype, name
        else:
            assert p.dtype == torch.float8_e4m3fn, name
    block = "transformer_blocks.1."
    assert {block + "img_mod.1", block + "txt_mod.1", block + "img_norm1", "norm_out.linear"} <= kept
    assert {"img_in", "proj_out", "txt_norm.0", "time_text_embed.timestep_embedder.linear_1"} <= kept
    assert pipe.transformer.get_submodule(block + "attn.img_qkv").weight.dtype == torch.float8_e4m3fn
    out = pipe("a red circle", generator=_gen(2), **kw).images
    assert out.dtype == torch.float32
    assert 0 < ((out - reference).norm() / reference.norm()).item() < 0.05


def test_import_lens_alone_lets_diffusion_pipeline_load_a_saved_pipeline(tmp_path):
    tiny_random_pipeline().save_pretrained(tmp_path)
    code = (
        "import sys, lens\n"
        "assert 'diffusers' not in sys.modules and 'torch' not in sys.modules  # lens --help stays fast\n"
        "from diffusers import DiffusionPipeline\n"
        "pipe = DiffusionPipeline.from_pretrained(sys.argv[1])\n"
        "print(type(pipe).__name__, type(pipe.transformer).__name__, type(pipe.text_encoder).__name__)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["LensPipeline", "LensTransformer2DModel", "LensGptOssEncoder"]
