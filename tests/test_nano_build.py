"""`build_components` / `lens nano build-components`: loadable folders that assemble a LensPipeline."""

from __future__ import annotations

import json

import pytest
import torch

from lens.cli import main
from lens.errors import LensError
from lens.nano.build import MANIFEST, build_components, plan_for_budget, small_plan

QUIET = lambda message: None  # noqa: E731


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("nano") / "components"
    return out, build_components(out, seed=0, plan=small_plan(), log=QUIET)


def test_folders_load_with_the_library_classes(built):
    from diffusers import AutoencoderKLFlux2
    from transformers import AutoTokenizer

    from lens.latents import LatentCodec
    from lens.nano.corpus import world_images
    from lens.text.encoder import LensGptOssEncoder, encode_prompts

    out, manifest = built
    vae = AutoencoderKLFlux2.from_pretrained(out / "vae").eval()
    lm = LensGptOssEncoder.from_pretrained(out / "text_encoder").eval()
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    assert len(tok) == lm.config.vocab_size == manifest["tokenizer"]["vocab_size"]
    assert tok.eos_token == "<|return|>" and tok.pad_token == "<|endoftext|>"
    feats, mask = encode_prompts(lm, tok, ["a photo of a red circle"], layers=(0, 1))
    assert feats.shape[2:] == (2, 32) and mask.all()
    # the saved BatchNorm statistics are the fitted ones: the training images come out normalised
    z = LatentCodec(vae).encode(world_images(0, 0, 16, 64, 64))
    assert abs(z.mean().item()) < 1e-3 and abs(z.var(dim=(0, 2, 3), unbiased=False).mean().item() - 1) < 0.05


def test_manifest_records_plan_measurements_and_settings(built):
    out, manifest = built
    assert json.loads((out / MANIFEST).read_text()) == manifest
    assert manifest["plan"]["lm_steps"] == 3 and manifest["text_encoder"]["train"]["steps"] == 3
    assert manifest["denoiser_settings"]["enc_hidden_dim"] == 32
    assert manifest["denoiser_settings"]["selected_layer_index"] == [0, 1]
    settings, text = manifest["denoiser_settings"], manifest["tokenizer"]
    assert (
        settings["max_text_tokens"]
        >= text["prefix_tokens"] + text["caption_tokens"]["max"] + text["suffix_tokens"]
    )
    assert 0 < manifest["vae"]["psnr_64"] < 60 and all(v > 0 for v in manifest["sizes_mb"].values())
    assert (out / "vae_reconstructions_64.png").is_file() and (out / "vae_reconstructions_128.png").is_file()


def test_components_assemble_a_lens_pipeline(built, tmp_path):
    from diffusers import AutoencoderKLFlux2
    from transformers import AutoTokenizer

    from lens.model.transformer import LensTransformer2DModel
    from lens.pipeline import LensPipeline
    from lens.sampling.schedule import make_scheduler
    from lens.testing import tiny_denoiser_config
    from lens.text.encoder import LensGptOssEncoder

    out, manifest = built
    settings = manifest["denoiser_settings"]
    torch.manual_seed(0)
    transformer = LensTransformer2DModel(
        **tiny_denoiser_config(
            enc_hidden_dim=settings["enc_hidden_dim"],
            selected_layer_index=tuple(settings["selected_layer_index"]),
        )
    ).eval()
    pipe = LensPipeline(
        scheduler=make_scheduler(),
        vae=AutoencoderKLFlux2.from_pretrained(out / "vae"),
        text_encoder=LensGptOssEncoder.from_pretrained(out / "text_encoder"),
        tokenizer=AutoTokenizer.from_pretrained(out / "tokenizer"),
        transformer=transformer,
        default_height=64,
        default_width=64,
    )

    def draw(p):
        return p(
            "two blue squares", num_inference_steps=2, output_type="pt", generator=torch.manual_seed(0)
        ).images

    image = draw(pipe)
    assert image.shape == (1, 3, 64, 64) and torch.isfinite(image).all()
    pipe.save_pretrained(tmp_path / "pipe")  # the released diffusers layout round-trips
    again = LensPipeline.from_pretrained(tmp_path / "pipe")
    # same weights; loaded tensors sit elsewhere in memory, so CPU kernels may sum in another order
    torch.testing.assert_close(draw(again), image, atol=1e-5, rtol=0)


def test_same_seed_same_weights_and_no_overwrite(built, tmp_path):
    out, _ = built
    again = tmp_path / "again"
    build_components(again, seed=0, plan=small_plan(), log=QUIET)
    for part in (
        "text_encoder/model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "tokenizer/tokenizer.json",
    ):
        assert (again / part).read_bytes() == (out / part).read_bytes(), part
    with pytest.raises(LensError, match="already holds"):
        build_components(again, seed=0, plan=small_plan(), log=QUIET)


def test_budget_sets_the_plan():
    small, large = plan_for_budget(1), plan_for_budget(20)
    assert small.lm_steps < large.lm_steps and small.vae_steps < large.vae_steps
    assert plan_for_budget(20) == large and plan_for_budget(20, 64).native_size == 64
    for bad in (0, -1, "ten"):
        with pytest.raises(LensError, match="budget"):
            plan_for_budget(bad)


def test_cli_builds_with_a_tiny_budget(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["nano", "build-components", str(out), "--minutes-budget", "0.01", "--threads", "1"]) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["denoiser_settings"]["enc_hidden_dim"] == 64 and manifest["plan"]["lm_steps"] == 2
    assert "PSNR" in capsys.readouterr().out
    assert main(["nano", "build-components", str(out), "--minutes-budget", "0.01"]) == 2
    assert "already holds" in capsys.readouterr().err


def test_cli_makes_the_frozen_folder_under_the_released_names(built, tmp_path, capsys):
    from lens.nano.bundle import FROZEN

    components, manifest = built
    out = tmp_path / "frozen"
    assert main(["nano", "frozen", str(components), str(out)]) == 0
    assert f"encoders.source={out}" in capsys.readouterr().out
    index = json.loads((out / "model_index.json").read_text())
    assert index["text_encoder"] == ["transformers", "LensGptOssEncoder"]  # not GptOssForCausalLM
    assert index["default_height"] == manifest["denoiser_settings"]["native_size"] == 64
    assert (out / "scheduler").is_dir() and not (out / "transformer").exists()
    for name in FROZEN:  # the builder's own files, byte for byte
        for f in (components / name).iterdir():
            assert (out / name / f.name).read_bytes() == f.read_bytes(), f
    assert main(["nano", "frozen", str(components), str(out)]) == 2
    assert "is not empty" in capsys.readouterr().err


def test_lookup_text_encoder_gives_each_token_its_own_embedding(built, tmp_path):
    from transformers import AutoTokenizer

    from lens.text.encoder import LensGptOssEncoder, encode_prompts

    components, _ = built
    out = tmp_path / "frozen_lookup"
    assert main(["nano", "frozen", str(components), str(out), "--text-encoder", "lookup"]) == 0
    lm = LensGptOssEncoder.from_pretrained(out / "text_encoder").eval()
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    captions = ["a red circle above a blue square", "a blue circle above a blue square"]
    layers = tuple(range(lm.config.num_hidden_layers))
    feats, mask = encode_prompts(lm, tok, captions, layers=layers)  # (2, S, L, D)
    ids = [tok(c, add_special_tokens=False)["input_ids"] for c in captions]
    table = lm.model.embed_tokens.weight
    assert table.std().item() == pytest.approx(1.0, abs=0.1)  # not HF's 0.02
    for row, caption_ids in enumerate(ids):
        own = feats[row, mask[row]]  # (S_i, L, D): the caption and the template suffix
        for layer in layers:  # no context mixing: every layer is the token's embedding
            torch.testing.assert_close(own[:, layer], own[:, 0])
        embedded = table[caption_ids]  # the caption's words appear, in order, as their embeddings
        starts = [i for i in range(len(own) - len(caption_ids) + 1)
                  if torch.allclose(own[i : i + len(caption_ids), 0], embedded)]  # fmt: skip
        assert len(starts) == 1
    # the colour word changes its own token's feature and nothing else (no context)
    a, b = feats[0, mask[0]][:, 0], feats[1, mask[1]][:, 0]
    assert int((a - b).abs().sum(-1).gt(1e-6).sum()) == 1
    with pytest.raises(LensError, match="text_encoder must be one of"):
        from lens.nano.bundle import frozen_folder

        frozen_folder(components, tmp_path / "bad", text_encoder="bag")
