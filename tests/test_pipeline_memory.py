"""Memory levers on tiny pipelines (CPU): model CPU offload through accelerate's hooks, the latent
codec under a VAE hook, float8 layerwise storage, and `import lens` registering the released names."""

import copy
import os
import subprocess
import sys

import torch

from lens.latents import LatentCodec, tiny_flux2_vae
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
