"""The reasoner in use: the pipeline rewrites before encoding, and `lens generate --reasoner api|local`."""

from __future__ import annotations

import PIL.Image
import pytest
import torch

from lens.cli import main
from tests.reasoner_support import KEY_ENV, PROMPT, ReasonerServer, api_reasoner, pipe, server  # noqa: F401

# ---------------------------------------------------------------- the pipeline hook


@pytest.fixture
def encoded(pipe, monkeypatch):
    """The prompts each encode_prompt call received."""
    seen: list = []
    original = pipe.encode_prompt

    def spy(prompt=None, *args, **kw):
        seen.append(prompt)
        return original(prompt, *args, **kw)

    monkeypatch.setattr(pipe, "encode_prompt", spy)
    return seen


def test_the_pipeline_rewrites_before_encoding(pipe, server, api_reasoner, encoded):
    run = dict(num_inference_steps=1, output_type="latent", generator=torch.Generator().manual_seed(0))
    pipe.enable_reasoner(api_reasoner())
    try:
        out = pipe([PROMPT, "a blue square"], num_images_per_prompt=2, **run).images
        assert out.shape[0] == 4
        rewritten = [server.answer(PROMPT), server.answer("a blue square")]
        assert encoded[0] == rewritten and pipe.rewritten_prompts == rewritten
        pipe(prompt_embeds=pipe.encode_prompt("x")[0], **run)  # embeddings: nothing to rewrite
        assert pipe.rewritten_prompts is None and len(server.bodies) == 2
    finally:
        pipe.disable_reasoner()
    pipe(PROMPT, **run)
    assert encoded[-1] == [PROMPT] and pipe.rewritten_prompts == [PROMPT] and len(server.bodies) == 2


def test_a_failing_reasoner_still_gives_the_image(pipe, server, api_reasoner, encoded):
    server.always[ReasonerServer.image_id({"messages": [{"content": PROMPT}]})] = "500"
    pipe.enable_reasoner(api_reasoner(settings={"max_retries": 0}))
    try:
        image = pipe(PROMPT, num_inference_steps=1).images[0]
    finally:
        pipe.disable_reasoner()
    assert isinstance(image, PIL.Image.Image) and encoded[0] == [PROMPT]


# ---------------------------------------------------------------- lens generate


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    assert main(["create-tiny", str(path)]) == 0
    return path


def test_generate_with_the_api_reasoner(model_dir, server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-cli")
    args = ["generate", PROMPT, "--model", str(model_dir), "--steps", "1", "--out", str(tmp_path)]
    api = ["--api-base", server.url, "--api-model", "chat-model", "--api-key-env", KEY_ENV]
    assert main(args + api) == 0  # auto + --api-model = api
    image = PIL.Image.open(next(tmp_path.glob("*.png")))
    assert image.text["prompt"] == PROMPT and image.text["caption"] == server.answer(PROMPT)
    assert "caption (api reasoner)" in capsys.readouterr().out and server.auth == ["Bearer sk-cli"]
    server.script.extend(["500"] * 3)  # fails past its 2 retries: the image is made from the prompt
    assert main(args + ["--reasoner", "api", "--out", str(tmp_path / "f")] + api[:4]) == 0
    assert "caption" not in PIL.Image.open(next((tmp_path / "f").glob("*.png"))).text
    system = tmp_path / "system.txt"
    system.write_text("Describe the request as a photo, in detail.\n")  # e.g. `lens reasoner search`'s best
    assert main(args + api + ["--system-prompt-file", str(system), "--out", str(tmp_path / "s")]) == 0
    assert server.bodies[-1]["messages"][0]["content"] == "Describe the request as a photo, in detail."


@pytest.mark.parametrize(
    "extra, words_",
    [
        (["--reasoner", "api"], "--api-model"),
        (["--reasoner", "none", "--api-model", "m"], "need --reasoner api"),
        (["--reasoner", "local", "--api-base", "http://127.0.0.1:9/v1"], "need --reasoner api"),
        (["--reasoner", "api", "--api-model", "m", "--api-base", "https://x.example.invalid/v1",
          "--api-key-env", "LENS_TEST_UNSET_KEY"], "LENS_TEST_UNSET_KEY"),
        (["--reasoner", "none", "--system-prompt-file", "p.txt"], "needs --reasoner api or local"),
    ],
)  # fmt: skip
def test_generate_reasoner_options_are_checked_first(model_dir, tmp_path, capsys, monkeypatch, extra, words_):
    monkeypatch.delenv("LENS_TEST_UNSET_KEY", raising=False)
    assert main(["generate", "x", "--model", str(model_dir), "--out", str(tmp_path)] + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("lens generate: error:") and words_ in err
    assert not list(tmp_path.glob("*.png"))


def test_generate_local_reasoner_is_built(model_dir):
    import argparse

    from lens.cli.reasoner_options import reasoner_from_args

    args = argparse.Namespace(
        reasoner="local", api_base=None, api_key_env=None, api_model=None, system_prompt_file=None
    )
    reasoner = reasoner_from_args(args)
    assert reasoner.source == "local" and reasoner.max_new_tokens == 4096 and reasoner.temperature == 0.7
