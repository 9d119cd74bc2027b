"""`lens finetune`: captioned folders (.txt sidecars and metadata.jsonl) -> LoRA and full fine-tunes of a
tiny random base through ingest, prepare, train and export; exact resume; corrupt images skipped and
counted; bad inputs as one-line errors."""

import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from lens.cli import main
from lens.errors import LensError
from lens.finetune import finetune, plan_buckets
from lens.pipeline import LensPipeline
from lens.testing import tiny_random_pipeline

SIZES = [(64, 64), (64, 64), (48, 80), (80, 48), (64, 64), (72, 56)]  # (height, width)
FAST = ["--set", "optim.lr=1e-2", "--set", "log.sample_steps=2", "--set", "data.workers=0"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("base")
    tiny_random_pipeline(seed=0).save_pretrained(str(path))
    return path


def _png(h: int, w: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _folder(root, jsonl: bool = False, corrupt: bool = False):
    """Six captioned images: kohya sidecars, or diffusers' metadata.jsonl naming a subfolder's files."""
    root.mkdir()
    rows = []
    for i, (h, w) in enumerate(SIZES):
        name = f"train/img{i}.png" if jsonl else f"img{i}.png"
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(_png(h, w, i))
        rows.append({"file_name": name, "text": f"a photo of the thing, number {i}"})
        if not jsonl:
            (root / f"img{i}.txt").write_text(rows[-1]["text"] + "\n")
    if jsonl:
        (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if corrupt:  # a truncated PNG with a caption: skipped and counted, never fatal
        (root / "broken.png").write_bytes(_png(64, 64, 99)[:60])
        (root / "broken.txt").write_text("a broken image")
    return root


def _latents(pipe) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return pipe("a photo of the thing", num_inference_steps=2, output_type="latent", generator=g).images


def test_buckets_follow_the_images_aspect_ratios():
    assert plan_buckets(SIZES, 64, 64, batch_size=2) == "48x80:2,64x64:2,80x48:2"
    # at 1024^2, a 3:2 landscape and a tall 1:2 keep their own buckets
    assert plan_buckets([(800, 1200), (2000, 1000)], 1024, 1024) == "832x1248:1,1456x720:1"


def test_lora_finetune_of_a_txt_folder_skips_corrupt_images_and_resumes(base, tmp_path, capsys):
    data, out = _folder(tmp_path / "data", corrupt=True), tmp_path / "out"
    args = ["finetune", str(data), "--base", str(base), "--out", str(out), "--lora-rank", "4", "--steps", "2"]
    assert main(args + FAST) == 0
    printed = capsys.readouterr().out
    assert "fine-tuned on 6 images (skipped 1:" in printed
    manifest = json.loads((out / "finetune.json").read_text())
    assert manifest["kind"] == "features" and manifest["prepare"]["samples"] == 6
    assert manifest["buckets"] == "48x80:1,64x64:1,80x48:1"
    assert manifest["prompts"][0] == "a photo of the thing, number 0"
    assert sorted(p.name for p in (out / "run" / "samples").iterdir()) == [
        "step_00000001.png",
        "step_00000002.png",
    ]

    adapter = out / "pipeline" / "lora" / "pytorch_lora_weights.safetensors"
    assert adapter.is_file() and f"adapter: {adapter}" in printed
    assert all(".lora_" in k for k in load_file(str(adapter)))
    pipe = LensPipeline.from_pretrained(str(base))
    before = _latents(pipe)
    pipe.load_lora_weights(adapter.parent)
    adapted = _latents(pipe)
    assert not torch.allclose(adapted, before, atol=1e-4)  # the LoRA trained
    merged = _latents(LensPipeline.from_pretrained(str(out / "pipeline"), dtype=torch.float32))
    torch.testing.assert_close(merged, adapted, atol=1e-4, rtol=1e-4)

    with pytest.raises(LensError, match="pass --resume"):
        finetune(str(data), str(base), out, lora_rank=4, steps=2)
    result = finetune(str(data), str(base), out, steps=4, resume=True)
    assert result["run"]["step"] == 4 and len(result["run"]["losses"]) == 2  # steps 3 and 4 only
    assert json.loads((out / "pipeline" / "lens_training.json").read_text())["step"] == 4


def test_full_finetune_of_a_metadata_jsonl_folder(base, tmp_path, capsys):
    data, out = _folder(tmp_path / "data", jsonl=True), tmp_path / "out"
    args = ["finetune", str(data), "--base", str(base), "--out", str(out), "--full", "--steps", "2"]
    assert main(args + FAST) == 0
    printed = capsys.readouterr().out
    assert "fine-tuned on 6 images, step 2" in printed and "adapter:" not in printed
    assert not (out / "pipeline" / "lora").exists()
    assert json.loads((out / "run" / "config.json").read_text())["model"]["lora_rank"] == 0
    trained = load_file(str(out / "pipeline" / "transformer" / "diffusion_pytorch_model.safetensors"))
    start = load_file(str(base / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert trained.keys() == start.keys()
    assert any(not torch.equal(trained[k].float(), start[k].float()) for k in start)


@pytest.mark.parametrize(
    "case, message",
    [
        ("uncaptioned", "1 of 6 images in .* have no caption"),
        ("empty", "found no images or shards"),
        ("no-base", "--base .* does not exist"),
    ],
)
def test_bad_inputs_are_one_line_errors(base, tmp_path, capsys, case, message):
    data = _folder(tmp_path / "data") if case != "empty" else tmp_path / "data"
    data.mkdir(exist_ok=True)
    if case == "uncaptioned":
        (data / "img3.txt").unlink()
    where = tmp_path / "missing" if case == "no-base" else base
    assert main(["finetune", str(data), "--base", str(where), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("lens finetune: error:")
    assert re.search(message, err), err
    assert not (tmp_path / "out" / "run").exists()
