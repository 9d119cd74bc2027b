"""`lens eval probe | x0 | gate | colour-share | object-gain` and `nano-run --caption-style` on a tiny saved
pipeline."""

import json

import pytest

from lens.cli import main
from lens.cli.options import CAPTION_STYLES
from lens.eval import nano_prompts
from lens.testing import tiny_random_pipeline
from lens.world import rewrite_prompt

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # `lens eval probe --threads` sets torch's


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "pipe"
    tiny_random_pipeline(height=32, width=32).save_pretrained(str(path), safe_serialization=True)
    return str(path)


@pytest.fixture
def encoded(monkeypatch):
    """Every prompt the pipelines encode, in order."""
    from lens.pipeline import LensPipeline

    seen, encode = [], LensPipeline.encode_prompt

    def spy(self, prompts, *args, **kwargs):
        seen.extend(prompts)
        return encode(self, prompts, *args, **kwargs)

    monkeypatch.setattr(LensPipeline, "encode_prompt", spy)
    return seen


def _rows(out: str, start: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in out.splitlines()
        if line.startswith(start)
    ]


def test_probe_prints_the_librarys_scores_per_model(model, encoded, capsys):
    from lens.inference import load_pipeline
    from lens.research.probes import pipeline_colour_swap, probe_scenes

    args = ["eval", "probe", "--model", model, model, "--scenes", "3", "--objects", "0"]
    assert main(args + ["--sigmas", "0.5", "1", "--caption-style", "verbose", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert {p.caption for p in probe_scenes(3, size=(32, 32), style="verbose")} < set(encoded)
    assert "| pipeline | scenes | sigma 0.5 | sigma 1 |" in out
    rows = pipeline_colour_swap(load_pipeline(model), 3, None, "object", (0.5, 1.0), "verbose")
    cells = [model, "3", *(f"{r['swap']:.3f} ({r['anywhere']:.3f})" for r in rows.values())]
    assert _rows(out, f"| {model} |") == [cells, cells]
    assert main(["eval", "probe", "--model", model, "--sigmas", "1.5"]) == 2
    assert "lens eval: error: --sigmas must lie in 0..1" in capsys.readouterr().err


def test_x0_grid_writes_scenes_over_predictions(model, encoded, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from lens.inference import load_pipeline
    from lens.research.probes import probe_scenes, x0_grid, x0_reader

    out = tmp_path / "x0.png"
    args = ["eval", "x0", "--model", model, "--out", str(out), "--scenes", "3", "--sigmas", "0.5", "1"]
    assert main(args + ["--object-scale", "1.5", "--brief"]) == 0
    grid = np.asarray(Image.open(out))
    assert grid.shape == (32 * 3, 32 * 3, 3)  # the scenes, then one row per sigma
    probes = probe_scenes(3, 1, (32, 32), object_scale=1.5, brief=True)
    assert all(p.caption in encoded for p in probes)  # brief captions of the scaled scenes
    assert np.array_equal(
        grid[:32], (np.concatenate([p.pixels for p in probes], 1) * 255).round().astype(np.uint8)
    )
    again = x0_grid(x0_reader(load_pipeline(model), probes), probes, [0.5, 1.0])
    assert np.abs(grid[32:].astype(int) - (again[32:] * 255).round()).max() <= 1  # the library's grid
    assert main(["eval", "x0", "--model", model, "--out", str(out), "--object-scale", "5"]) == 2
    assert "object scale must be in" in capsys.readouterr().err


def test_gate_prints_and_writes_the_shares(model, tmp_path, capsys):
    args = ["eval", "gate", "--model", model, "--seeds", "1", "--steps", "1", "--guidance", "1"]
    assert main(args + ["--device", "cpu", "--json", str(tmp_path / "gate.json")]) == 0
    scores = json.loads((tmp_path / "gate.json").read_text())
    assert set(scores) == {"colour", "shape", "both", "n"} and scores["n"] == 64
    assert all(0.0 <= scores[k] <= 1.0 for k in ("colour", "shape", "both"))
    cells = [f"{scores[k]:.3f}" for k in ("colour", "shape", "both")]
    assert _rows(capsys.readouterr().out, f"| {model} |") == [[model, *cells, "64"]]


def test_gate_can_prompt_through_the_reasoner(model, monkeypatch, capsys):
    import lens.eval.sweep

    real, seen = lens.eval.sweep.pipeline_generator, []

    def recording(*args):
        generate = real(*args)

        def wrapped(prompts, seed):
            seen.extend(prompts)
            return generate(prompts, seed)

        return wrapped

    monkeypatch.setattr(lens.eval.sweep, "pipeline_generator", recording)
    args = ["eval", "gate", "--model", model, "--seeds", "1", "--steps", "1", "--device", "cpu"]
    assert main(args + ["--prompts", "reasoner", "--caption-style", "verbose"]) == 0
    assert len(seen) == 64 and not any(text.startswith("a photo of") for text in seen)
    assert min(len(text.split()) for text in seen) > 40  # verbose rewrites, not the short prompts
    assert _rows(capsys.readouterr().out, f"| {model} |")


def test_colour_share_defaults_to_the_bundled_model(model, monkeypatch, capsys):
    from pathlib import Path

    import lens.inference
    from lens.research.colour_share import pipeline_colour_share

    monkeypatch.setattr(lens.inference, "BUNDLED_MODEL", Path(model))
    assert main(["eval", "colour-share", "--scenes", "4", "--caption-style", "verbose"]) == 0
    result = pipeline_colour_share(lens.inference.load_pipeline(model), 4, "verbose")
    assert 0.0 < result["share"] < 1.0
    row = ["the bundled Lens-Nano", f"{result['share']:.4f}", str(result["n"])]
    assert _rows(capsys.readouterr().out, "| the bundled Lens-Nano |") == [row]


def test_nano_run_feeds_rewrites_in_the_caption_style(model, encoded, monkeypatch, capsys):
    import lens.eval.nano_eval

    prompts = nano_prompts()[:2]
    monkeypatch.setattr(lens.eval.nano_eval, "nano_prompts", lambda: prompts)
    args = ["eval", "nano-run", "--model", model, "--prompts", "reasoner", "--size", "32x32", "--steps", "1"]
    args += ["--n-samples", "1", "--guidance", "1", "--device", "cpu", "--caption-style", "verbose"]
    assert main(args) == 0
    assert encoded == [rewrite_prompt(md["prompt"], style="verbose") for md in prompts]
    assert encoded != [rewrite_prompt(md["prompt"]) for md in prompts]
    assert "reasoner, CFG 1, 32x32" in capsys.readouterr().out


def test_nano_run_lays_out_at_the_pipelines_world_scale(model, encoded, monkeypatch, tmp_path, capsys):
    import shutil

    import lens.eval.nano_eval

    prompts = [md for md in nano_prompts() if md["tag"] == "counting"][:2]
    monkeypatch.setattr(lens.eval.nano_eval, "nano_prompts", lambda: prompts)
    scaled = tmp_path / "scaled"
    shutil.copytree(model, scaled)
    index = json.loads((scaled / "model_index.json").read_text())
    (scaled / "model_index.json").write_text(json.dumps({**index, "world_object_scale": 1.8}))
    args = ["eval", "nano-run", "--prompts", "reasoner", "--size", "32x32", "--steps", "1"]
    args += ["--n-samples", "1", "--guidance", "1", "--device", "cpu"]
    assert main([*args, "--model", str(scaled)]) == 0
    large = [rewrite_prompt(md["prompt"], object_scale=1.8) for md in prompts]
    assert encoded == large and large != [rewrite_prompt(md["prompt"]) for md in prompts]
    encoded.clear()
    assert main([*args, "--model", str(scaled), "--object-scale", "1"]) == 0  # the override
    assert encoded == [rewrite_prompt(md["prompt"]) for md in prompts]
    assert main([*args, "--model", str(scaled), "--object-scale", "5"]) == 2
    assert "object scale must be in 0.5..2.0" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["probe", "colour-share", "nano-run"])
def test_an_unknown_caption_style_is_refused(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", command, "--caption-style", "florid"])
    assert exit_.value.code == 2 and "invalid choice: 'florid'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "nano-run", "--guidance", "3", "nan"],
        ["eval", "gate", "--guidance", "inf"],
        ["nano", "build", "unused", "--guidance=-inf"],
    ],
)
def test_guidance_that_is_not_finite_is_refused_in_one_line(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # where `nano build` would write, were it not refused
    assert main(command) == 2  # before any model loads or folder is made
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--guidance must be a finite number" in err[0]


def test_the_cli_offers_the_worlds_caption_styles():
    from lens.world.captions import CAPTION_STYLES as WORLD_STYLES

    assert CAPTION_STYLES == WORLD_STYLES


def test_object_gain_prints_the_librarys_table(model, capsys):
    from lens.inference import load_pipeline
    from lens.research.object_gain import format_gain, object_gain

    assert (
        main(["eval", "object-gain", "--model", model, "--scenes", "3", "--objects", "1", "--threads", "1"])
        == 0
    )
    result = object_gain(load_pipeline(model, device="cpu"), 3, 1)
    assert 0.0 < result["object_tokens"] < 1.0 and [r["sigma"] for r in result["rows"]] == [
        0.3,
        0.5,
        0.7,
        0.9,
    ]
    out = capsys.readouterr().out
    assert f"object tokens are {result['object_tokens']:.1%} of all" in out and format_gain(result) in out
    assert main(["eval", "object-gain", "--model", model, "--objects", "5"]) == 2
