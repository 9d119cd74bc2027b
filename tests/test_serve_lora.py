"""The `lora` field through the official openai client: the server's adapters (by name, never a path)
change the image exactly as the same adapter set on the pipeline does, requests with different
adapters never share a call, and an unknown name is a 400."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai
import PIL.Image
import pytest
import torch

from lens.lora import add_lora, save_lora, use_lora
from lens.model.transformer import LensTransformer2DModel
from lens.serve.metrics import Metrics
from lens.serve.worker import Worker
from lens.testing import randomise_lora_b, tiny_denoiser_config
from tests.serve_support import MODEL_ID, Controlled, client, load_tiny, serving, wait_for

STEPS, GUIDANCE = 2, 2.0
PARAMS = {"num_inference_steps": STEPS, "guidance_scale": GUIDANCE}


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """{name: adapter file}: two random rank-4 adapters for the tiny denoiser, saved as lens.lora does."""
    root = tmp_path_factory.mktemp("loras")
    files = {}
    for seed, name in enumerate(("ink", "neon"), start=1):
        transformer = LensTransformer2DModel(**tiny_denoiser_config())
        add_lora(transformer, rank=4)
        randomise_lora_b(transformer, seed=seed)
        files[name] = str(save_lora(transformer, root / name))
    return files


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("serve-lora") / "tiny"


@pytest.fixture(scope="module")
def served(folder, adapters):
    """(base URL, worker, the gated pipeline) of a server started with both adapters."""
    pipe = Controlled(load_tiny(folder))
    with serving(pipe, loras=adapters) as (url, worker):
        # loaded before anything else loads: peft patches torch globally while it loads an adapter
        assert worker.loaded.wait(60) and worker.state == "ready", worker.error
        yield url, worker, pipe


@pytest.fixture(scope="module")
def direct(folder, adapters, served):
    """f(prompt, seed, adapter or None) -> pixels of a plain pipeline call, the adapter set by use_lora."""
    pipe = load_tiny(folder)
    for name, path in adapters.items():
        use_lora(pipe, path, adapter_name=name)

    def run(prompt: str, seed: int, lora: str | None, scale: float = 1.0) -> np.ndarray:
        if lora is None:
            pipe.disable_lora()
        else:
            pipe.enable_lora()
            pipe.set_adapters([lora], [scale])
        g = torch.Generator("cpu").manual_seed(seed)
        image = pipe(prompt, num_inference_steps=STEPS, guidance_scale=GUIDANCE, generator=g).images[0]
        return np.asarray(image, dtype=np.int16)

    return run


def _image(result, k: int = 0) -> PIL.Image.Image:
    image = PIL.Image.open(io.BytesIO(base64.b64decode(result.data[k].b64_json)))
    image.load()
    return image


def _generate(url: str, prompt: str, seed: int, **extra) -> PIL.Image.Image:
    body = {"seed": seed, **PARAMS, **extra}
    return _image(client(url).images.generate(prompt=prompt, extra_body=body))


def _close(image: PIL.Image.Image, pixels: np.ndarray) -> bool:
    return np.abs(np.asarray(image, dtype=np.int16) - pixels).max() <= 1


def test_an_adapter_changes_the_image_as_the_pipeline_with_it_set_does(served, direct):
    url = served[0]
    base = _generate(url, "a red circle", 3)
    ink = _generate(url, "a red circle", 3, lora="ink")
    assert _close(base, direct("a red circle", 3, None))
    assert _close(ink, direct("a red circle", 3, "ink"))
    assert not _close(ink, np.asarray(base, dtype=np.int16))  # the adapter does change the image
    assert (ink.text["lora"], ink.text["lora_scale"]) == ("ink", "1.0")  # the PNG says how to redo it
    assert "lora" not in base.text
    half = _generate(url, "a red circle", 3, lora="ink", lora_scale=0.5)
    assert _close(half, direct("a red circle", 3, "ink", 0.5))
    # vLLM's way: the adapter named as the model (GET /v1/models lists it) is the same request
    as_model = client(url).images.generate(
        prompt="a red circle", model="ink", extra_body={"seed": 3, **PARAMS}
    )
    assert _close(_image(as_model), np.asarray(ink, dtype=np.int16))


def test_alternating_adapters_never_share_a_call(served, direct):
    url, worker, pipe = served
    plan = [("p1", "ink"), ("p2", "neon"), ("p3", "ink"), ("p4", "neon"), ("p5", None)]
    with ThreadPoolExecutor(len(plan) + 1) as pool:
        pipe.hold()
        first = pool.submit(_generate, url, "p0", 1)  # holds the worker while the rest queue up
        assert pipe.entered.wait(30)
        calls_before = len(pipe.calls)
        futures = {}
        for k, (prompt, lora) in enumerate(plan, start=1):  # one at a time: the queue order is the plan's
            futures[prompt] = pool.submit(
                _generate, url, prompt, 5, **({} if lora is None else {"lora": lora})
            )
            wait_for(lambda k=k: worker.depth() == k, what=f"{prompt} queued")
        pipe.gate.set()
        first.result(60)
        images = {prompt: f.result(60) for prompt, f in futures.items()}
    adapter_of = dict(plan)
    calls = pipe.calls[calls_before:]
    assert sorted(p for call in calls for p in call) == sorted(adapter_of)  # every request ran once
    assert [sorted(call) for call in calls] == [["p1", "p3"], ["p2", "p4"], ["p5"]]  # batched by adapter
    for prompt, lora in plan:
        assert _close(images[prompt], direct(prompt, 5, lora)), (prompt, lora)


def test_unknown_adapters_and_paths_are_400s_and_the_models_list_names_them(served, adapters):
    c = client(served[0])
    for bad in ("watercolor", adapters["ink"]):  # a path is never read, even of a loaded adapter
        with pytest.raises(openai.BadRequestError) as err:
            c.images.generate(prompt="a square", extra_body={"lora": bad})
        error = err.value.body
        assert error["param"] == "lora" and error["code"] == "invalid_value"
        assert f"unknown LoRA adapter {bad!r}; this server has ink, neon" in error["message"]
    with pytest.raises(openai.BadRequestError, match="lora_scale needs lora"):
        c.images.generate(prompt="a square", extra_body={"lora_scale": 0.5})
    with pytest.raises(openai.BadRequestError, match="lora_scale must be a finite number"):
        c.images.generate(prompt="a square", extra_body={"lora": "ink", "lora_scale": "strong"})
    models = {m.id: m for m in c.models.list().data}
    assert set(models) == {MODEL_ID, "ink", "neon"}
    assert models["ink"].model_extra["parent"] == MODEL_ID


def test_an_edit_takes_the_adapter_too(served):
    picture = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    buf = io.BytesIO()
    picture.save(buf, format="PNG")

    def edit(**extra):
        result = client(served[0]).images.edit(
            image=("in.png", buf.getvalue(), "image/png"),
            prompt="a blue square",
            extra_body={"seed": 2, "strength": 0.8, **PARAMS, **extra},
        )
        return _image(result)

    plain, ink = edit(), edit(lora="ink", lora_scale=0.7)
    assert (ink.text["edit"], ink.text["lora"], ink.text["lora_scale"]) == ("img2img", "ink", "0.7")
    assert not _close(ink, np.asarray(plain, dtype=np.int16))


def test_an_adapter_for_another_denoiser_stops_the_server_as_it_loads(folder, served, tmp_path):
    other = LensTransformer2DModel(**tiny_denoiser_config(num_layers=3))
    add_lora(other, rank=2)
    worker = Worker(lambda: load_tiny(folder), Metrics(), loras={"deep": str(save_lora(other, tmp_path))})
    assert worker.start().loaded.wait(60)
    assert worker.state == "failed"  # `lens serve` then exits 2 with this one line
    assert worker.error.startswith("could not load a LoRA adapter: LoRA ")
    assert "does not fit this denoiser" in worker.error and "\n" not in worker.error
