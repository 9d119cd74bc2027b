"""LoRA on the denoiser: targets, diffusers-layout files, load / fuse / unload on LensPipeline, the
`lens generate --lora` path, refused sources, and LoRA training through the engine (only the adapter
moves, resume is exact, export merges or writes the adapter)."""

import json
import pickle

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lens.cli import main
from lens.errors import LensError
from lens.export import load_run
from lens.lora import DEFAULT_TARGETS, add_lora, has_lora, resolve_targets, save_lora, use_lora
from lens.model.transformer import LensTransformer2DModel
from lens.testing import randomise_lora_b, tiny_random_pipeline
from lens.train.checkpoint import checkpoint_keys, latest_checkpoint
from lens.train.loop import train
from lens.train.presets import load_config


def _latents(pipe) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return pipe("a red circle", num_inference_steps=2, output_type="latent", generator=g).images


@pytest.fixture
def adapter(tmp_path):
    """(folder, the adapted pipeline's latents): rank 4, alpha 8, so the scale 2 must travel in the file."""
    pipe = tiny_random_pipeline()
    add_lora(pipe.transformer, rank=4, alpha=8, dropout=0.1)
    randomise_lora_b(pipe.transformer)
    pipe.transformer.eval()
    save_lora(pipe.transformer, tmp_path / "lora")
    return tmp_path / "lora", _latents(pipe)


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# ---------------------------------------------------------------------- targets
def test_default_targets_are_attention_and_mlp_and_skip_modulation(tiny_denoiser):
    add_lora(tiny_denoiser, rank=2)
    wrapped = {n.split(".", 2)[2] for n, m in tiny_denoiser.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == {
        "attn.img_qkv", "attn.txt_qkv", "attn.to_out.0", "attn.to_add_out",
        "img_mlp.w1", "img_mlp.w2", "img_mlp.w3", "txt_mlp.w1", "txt_mlp.w2", "txt_mlp.w3",
    }  # fmt: skip
    trainable = [n for n, p in tiny_denoiser.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)
    assert resolve_targets(tiny_denoiser, ("modulation", "img_qkv")) == ["img_mod.1", "txt_mod.1", "img_qkv"]
    assert DEFAULT_TARGETS == ("attention", "mlp")


def test_a_misspelt_target_is_one_line(tiny_denoiser):
    with pytest.raises(LensError) as err:
        add_lora(tiny_denoiser, rank=2, targets=("attention", "to_q"))
    assert "'to_q'" in _one_line(err) and "img_qkv" in str(err.value)
    with pytest.raises(LensError):
        add_lora(tiny_denoiser, rank=0)
    assert not has_lora(tiny_denoiser)


# ---------------------------------------------------------------------- files and the pipeline
def test_file_is_diffusers_layout_with_its_config_in_the_header(adapter):
    folder, _ = adapter
    assert sorted(p.name for p in folder.iterdir()) == ["pytorch_lora_weights.safetensors"]
    with safe_open(str(folder / "pytorch_lora_weights.safetensors"), "pt") as fh:
        keys, header = list(fh.keys()), fh.metadata()
    assert keys and all(k.startswith("transformer.transformer_blocks.") for k in keys)
    assert "transformer.transformer_blocks.0.attn.img_qkv.lora_A.weight" in keys
    meta = json.loads(header["lora_adapter_metadata"])
    assert meta["transformer.r"] == 4 and meta["transformer.lora_alpha"] == 8


def test_save_then_load_gives_identical_outputs(adapter):
    folder, expected = adapter
    pipe = tiny_random_pipeline()  # the same seed: the same base weights
    pipe.load_lora_weights(folder)
    assert torch.equal(_latents(pipe), expected)
    # the file itself, and a state dict with its header's metadata, load the same adapter
    state, metadata = pipe.lora_state_dict(folder, return_lora_metadata=True)
    for source, kwargs in (
        (folder / "pytorch_lora_weights.safetensors", {}),
        (state, {"metadata": metadata}),
    ):
        other = tiny_random_pipeline()
        other.load_lora_weights(source, **kwargs)
        assert torch.equal(_latents(other), expected)


def test_a_zero_b_adapter_is_a_no_op(tmp_path):
    pipe = tiny_random_pipeline()
    base = _latents(pipe)
    add_lora(pipe.transformer, rank=4)  # peft's init: B = 0
    assert torch.equal(_latents(pipe), base)
    save_lora(pipe.transformer, tmp_path)
    fresh = tiny_random_pipeline()
    fresh.load_lora_weights(tmp_path)
    assert torch.equal(_latents(fresh), base)


def test_fuse_equals_the_unfused_adapter(adapter):
    folder, _ = adapter
    unfused = tiny_random_pipeline()
    unfused.load_lora_weights(folder, adapter_name="style")
    unfused.set_adapters(["style"], [0.6])
    expected = _latents(unfused)

    pipe = tiny_random_pipeline()
    before = pipe.transformer.transformer_blocks[0].attn.img_qkv.weight.detach().clone()
    pipe.load_lora_weights(folder, adapter_name="style")
    pipe.fuse_lora(lora_scale=0.6)
    assert pipe.num_fused_loras == 1
    fused_weight = pipe.transformer.transformer_blocks[0].attn.img_qkv.base_layer.weight
    assert not torch.equal(fused_weight, before)  # really in the weights, not a side branch
    torch.testing.assert_close(_latents(pipe), expected, rtol=1e-4, atol=1e-5)
    pipe.unfuse_lora()
    assert pipe.num_fused_loras == 0
    torch.testing.assert_close(fused_weight, before, rtol=0, atol=1e-6)


def test_unload_restores_the_base_exactly(adapter):
    folder, adapted = adapter
    pipe = tiny_random_pipeline()
    state = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    base = _latents(pipe)
    assert not torch.equal(base, adapted)
    pipe.load_lora_weights(folder)
    assert torch.equal(_latents(pipe), adapted)
    pipe.unload_lora_weights()
    assert not has_lora(pipe.transformer)
    after = pipe.transformer.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], v) for k, v in state.items())
    assert torch.equal(_latents(pipe), base)


def test_use_lora_scale_zero_is_the_base_and_one_the_adapter(adapter):
    folder, adapted = adapter
    pipe = tiny_random_pipeline()
    base = _latents(pipe)
    use_lora(pipe, folder, 0.0)
    assert torch.equal(_latents(pipe), base)
    pipe.set_adapters(["lora"], [1.0])
    assert torch.equal(_latents(pipe), adapted)
    with pytest.raises(LensError) as err:  # the name is taken: one line, not a peft traceback
        pipe.load_lora_weights(folder, adapter_name="lora")
    assert "already in use" in _one_line(err)


# ---------------------------------------------------------------------- refused sources
class _Marker:
    """Unpickling this creates a file: proof that a refused pickle was never opened."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _other_model_adapter(path):
    other = LensTransformer2DModel(num_layers=1, num_attention_heads=2, attention_head_dim=8,
                                   axes_dims_rope=(2, 2, 4), enc_hidden_dim=32, selected_layer_index=(0, 1))  # fmt: skip
    add_lora(other, rank=2)
    save_lora(other, path)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p / "missing.safetensors", "does not exist"),
        (lambda p: p.mkdir() or p, "holds no pytorch_lora_weights.safetensors"),
        (lambda p: (p.with_suffix(".txt").write_text("x"), p.with_suffix(".txt"))[1], "not a .safetensors"),
        (
            lambda p: (p.with_suffix(".safetensors").write_bytes(b"garbage"), p.with_suffix(".safetensors"))[
                1
            ],
            "not a readable safetensors",
        ),  # fmt: skip
        (
            lambda p: (
                save_file({"w": torch.ones(2)}, str(p.with_suffix(".safetensors"))),
                p.with_suffix(".safetensors"),
            )[1],
            "not a Lens LoRA",
        ),  # fmt: skip
        (lambda p: _other_model_adapter(p) or p, "does not fit this denoiser"),
        (lambda p: "nobody-xyz/no-such-lora", "could not fetch"),  # offline in tests: one line either way
    ],
)
def test_bad_sources_are_one_line_lens_errors(tmp_path, make, words):
    source = make(tmp_path / "src")
    pipe = tiny_random_pipeline()
    with pytest.raises(LensError) as err:
        pipe.load_lora_weights(str(source))
    assert words in _one_line(err)
    assert not has_lora(pipe.transformer)


@pytest.mark.parametrize("layout", ["file", "folder"])
def test_pickle_adapters_are_refused_unread(tmp_path, layout):
    marker = tmp_path / "unpickled"
    folder = tmp_path / "lora"
    folder.mkdir()
    path = folder / "pytorch_lora_weights.bin"
    path.write_bytes(pickle.dumps(_Marker(marker)))
    pipe = tiny_random_pipeline()
    with pytest.raises(LensError) as err:
        pipe.load_lora_weights(path if layout == "file" else folder)
    assert "safetensors only" in _one_line(err) and not marker.exists()
    with pytest.raises(LensError):
        pipe.load_lora_weights(folder, use_safetensors=False)


# ---------------------------------------------------------------------- lens generate --lora
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    assert main(["create-tiny", str(path)]) == 0  # tiny_random_pipeline(seed=0)
    return path


def _png(folder) -> np.ndarray:
    (path,) = folder.glob("*.png")
    return np.asarray(PIL.Image.open(path))


def test_generate_with_lora_and_scale(model_dir, adapter, tmp_path, capsys):
    folder, _ = adapter
    args = ["generate", "a red circle", "--model", str(model_dir), "--steps", "2", "--reasoner", "none"]
    assert main(args + ["--out", str(tmp_path / "base")]) == 0
    assert main(args + ["--out", str(tmp_path / "zero"), "--lora", str(folder), "--lora-scale", "0"]) == 0
    assert main(args + ["--out", str(tmp_path / "full"), "--lora", str(folder)]) == 0
    assert np.array_equal(_png(tmp_path / "zero"), _png(tmp_path / "base"))
    assert not np.array_equal(_png(tmp_path / "full"), _png(tmp_path / "base"))
    capsys.readouterr()
    for extra, words in (  # each refused before the pipeline loads: nothing else on stderr
        (["--lora-scale", "0.5"], "--lora-scale needs --lora"),
        (["--lora", str(tmp_path / "nope")], "does not exist"),
        (["--lora", str(folder), "--lora-scale", "nan"], "finite"),
    ):
        assert main(args + ["--out", str(tmp_path / "x")] + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("lens generate: error:") and words in err[0]


# ---------------------------------------------------------------------- training through the engine
FAST = ["log.eval_every=0", "log.sample_every=0", "log.tensorboard=false", "checkpoint.interval=2"]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A denoiser folder of the debug preset's shape, to fine-tune from (model.init_from)."""
    cfg = load_config("debug")
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("base")
    LensTransformer2DModel(**cfg.model.model_kwargs()).save_pretrained(str(path))
    return path


def _lora_cfg(base_dir, run_dir, steps):
    sets = [
        f"model.init_from={base_dir}",
        "model.lora_rank=4",
        "model.lora_alpha=8",
        "model.lora_dropout=0.1",
    ]
    return load_config("debug", FAST + sets + [f"train.steps={steps}", f"run_dir={run_dir}"])


@pytest.fixture(scope="module")
def lora_run(base_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("lora") / "run"
    return run_dir, train(_lora_cfg(base_dir, run_dir, 4))


def test_lora_training_moves_only_the_adapter(lora_run, base_dir):
    run_dir, summary = lora_run
    assert summary["step"] == 4 and summary["skipped"] == 0
    _, model, step, _ = load_run(run_dir, weights="model")
    base = LensTransformer2DModel.from_pretrained(str(base_dir)).state_dict()
    trained = model.state_dict()
    frozen = {k.replace(".base_layer", ""): v for k, v in trained.items() if ".lora_" not in k}
    assert frozen.keys() == base.keys() and all(torch.equal(frozen[k], base[k]) for k in base)
    # B starts at zero: each moved, except where no gradient reaches (the last block's text stream
    # after attention feeds nothing the loss reads)
    still = {k.split(".lora_B")[0] for k, v in trained.items() if "lora_B" in k and not v.abs().sum() > 0}
    last = f"transformer_blocks.{model.config.num_layers - 1}."
    assert still == {last + m for m in ("attn.to_add_out", "txt_mlp.w1", "txt_mlp.w2", "txt_mlp.w3")}
    keys = checkpoint_keys(latest_checkpoint(run_dir))
    optim = [k for k in keys if k.startswith("optim.state.")]
    assert optim and all(".lora_" in k for k in optim)  # the base has no optimiser state at all
    assert all(".lora_" in k for k in keys if k.startswith("ema."))


def test_lora_resume_is_exact(lora_run, base_dir, tmp_path):
    _, straight = lora_run
    run_dir = tmp_path / "run"
    first = train(_lora_cfg(base_dir, run_dir, 2))
    resumed = train(_lora_cfg(base_dir, run_dir, 4), resume=True)
    assert first["losses"] + resumed["losses"] == straight["losses"]  # dropout masks included


def test_export_merges_or_writes_the_adapter(lora_run, base_dir, tmp_path, capsys):
    run_dir, _ = lora_run
    merged, alone = tmp_path / "merged", tmp_path / "alone"
    assert main(["export", str(run_dir), str(merged)]) == 0
    assert main(["export", str(run_dir), str(alone), "--lora", "adapter"]) == 0
    assert sorted(p.name for p in alone.iterdir()) == [
        "lens_training.json",
        "pytorch_lora_weights.safetensors",
    ]
    assert json.loads((alone / "lens_training.json").read_text())["lora"]["rank"] == 4

    from lens.pipeline import LensPipeline

    pipe = LensPipeline.from_pretrained(str(merged))
    assert not has_lora(pipe.transformer)  # a plain denoiser with the adapter folded in
    expected = _latents(pipe)
    pipe = LensPipeline.from_pretrained(
        str(merged), transformer=LensTransformer2DModel.from_pretrained(str(base_dir))
    )
    for folder in (alone, merged / "lora"):
        pipe.load_lora_weights(folder)
        torch.testing.assert_close(_latents(pipe), expected, rtol=1e-4, atol=1e-5)
        pipe.unload_lora_weights()
    # a run without LoRA has no adapter to write
    full = tmp_path / "full"
    train(load_config("debug", FAST + ["train.steps=2", f"run_dir={full}"]))
    assert main(["export", str(full), str(tmp_path / "x"), "--lora", "adapter"]) == 2
    assert "lora_rank=0" in capsys.readouterr().err


def test_lora_config_checks(base_dir):
    with pytest.raises(LensError, match="txt_in_init=whiten"):
        load_config("debug", ["model.lora_rank=4", "model.txt_in_init=whiten"])
    with pytest.raises(LensError, match="lora_dropout"):
        load_config("debug", ["model.lora_dropout=1.5"])
    cfg = load_config("debug", ["model.lora_rank=4", "model.lora_targets=attention;img_mod.1"])
    assert cfg.model.lora_kwargs()["targets"] == ("attention", "img_mod.1")
    assert "lora_rank" not in cfg.model.model_kwargs()


def test_activation_checkpointing_replays_the_lora_dropout_masks(tiny_denoiser):
    from lens.train.parallelize import apply_ac

    add_lora(tiny_denoiser, rank=4, dropout=0.5)
    randomise_lora_b(tiny_denoiser)
    tiny_denoiser.train()
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(2, 16, 128, generator=g), torch.randn(2, 5, 2, 24, generator=g)
    sigma = torch.tensor([0.3, 0.7])

    def grads():
        tiny_denoiser.zero_grad(set_to_none=True)
        torch.manual_seed(5)
        tiny_denoiser(x, text, sigma, image_grid=(4, 4)).sample.square().mean().backward()
        return {n: p.grad.clone() for n, p in tiny_denoiser.named_parameters() if p.grad is not None}

    plain = grads()
    apply_ac(tiny_denoiser)  # the recompute must draw the forward's masks again
    checkpointed = {k.replace("_checkpoint_wrapped_module.", ""): v for k, v in grads().items()}
    assert plain.keys() == checkpointed.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-7)
