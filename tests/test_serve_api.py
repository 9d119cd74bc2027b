"""The Images API through the official openai client against a running server on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import urllib.error
import urllib.request

import numpy as np
import openai
import pytest
from PIL import Image

from lens.serve.images import UrlStore
from tests.serve_support import MODEL_ID, client, load_tiny, serving


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_tiny(tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="module")
def server(tiny):
    with serving(tiny) as (url, worker):
        yield url


def _png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def test_b64_json_png_carries_its_parameters(server):
    result = client(server).images.generate(
        prompt="a red circle",
        model=MODEL_ID,
        size="48x32",
        response_format="b64_json",
        extra_body={"seed": 7, "num_inference_steps": 2, "guidance_scale": 2.5, "negative_prompt": "blur"},
    )
    assert len(result.data) == 1 and result.data[0].url is None
    image = _png(result.data[0].b64_json)
    assert image.size == (48, 32)  # size is WxH
    assert image.text["prompt"] == "a red circle"
    assert (image.text["seed"], image.text["steps"], image.text["guidance"]) == ("7", "2", "2.5")
    assert (image.text["size"], image.text["negative_prompt"]) == ("48x32", "blur")
    assert "seed=7" in image.text["parameters"]


def test_n_images_are_seed_plus_k_and_match_a_lone_request(server):
    c = client(server)
    many = c.images.generate(prompt="two squares", n=3, extra_body={"seed": 11})
    images = [_png(d.b64_json) for d in many.data]
    assert [im.text["seed"] for im in images] == ["11", "12", "13"]
    pixels = [np.asarray(im, dtype=np.int16) for im in images]
    assert np.abs(pixels[0] - pixels[1]).max() > 0  # different seeds, different noise
    # image k of a batch is the image a lone request with seed + k makes (its PNG says how to redo it)
    alone = np.asarray(
        _png(c.images.generate(prompt="two squares", extra_body={"seed": 12}).data[0].b64_json), np.int16
    )
    assert np.abs(alone - pixels[1]).max() <= 1


def test_url_response_is_served_and_expires(tiny):
    now = [0.0]
    urls = UrlStore(ttl=60, clock=lambda: now[0])
    with serving(tiny, urls=urls) as (url, _):
        result = client(url).images.generate(
            prompt="a blue triangle", response_format="url", extra_body={"seed": 1}
        )
        link = result.data[0].url
        assert link.startswith(url) and result.data[0].b64_json is None
        with urllib.request.urlopen(link) as response:
            assert response.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(response.read())).text["seed"] == "1"
        now[0] = 61.0
        with pytest.raises(urllib.error.HTTPError) as gone:
            urllib.request.urlopen(link)
        assert gone.value.code == 404


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"size": "100x64"}, "size", "width=100 is not a multiple of 16; use 96 or 112"),
        ({"size": "big"}, "size", "WIDTHxHEIGHT"),
        ({"size": "4096x4096"}, "size", "above the limit"),
        ({"n": 0}, "n", "n must be between 1 and 10"),
        ({"extra_body": {"num_inference_steps": 0}}, "num_inference_steps", "between 1 and 200"),
        ({"extra_body": {"guidance_scale": "high"}}, "guidance_scale", "must be a number"),
        ({"extra_body": {"aspect_ratio": "5:4"}}, "aspect_ratio", "unknown aspect ratio '5:4'"),
        ({"extra_body": {"seeds": 3}}, "seeds", "unknown field 'seeds'"),
        ({"prompt": "   "}, "prompt", "the prompt is empty"),
        ({"response_format": "jpeg"}, "response_format", "b64_json or url"),
    ],
)
def test_bad_input_is_a_400_with_the_field_and_a_clear_message(server, body, param, words):
    args = {"prompt": "a red circle"} | body
    with pytest.raises(openai.BadRequestError) as err:
        client(server).images.generate(**args)
    assert err.value.status_code == 400
    assert err.value.body["param"] == param and err.value.body["type"] == "invalid_request_error"
    assert words in err.value.body["message"]


def test_non_finite_guidance_is_refused(server):
    # JSON parsers (Python's too) accept NaN; the CLI's check refuses it
    request = urllib.request.Request(
        f"{server}v1/images/generations", data=b'{"prompt": "x", "guidance_scale": NaN}', method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request)
    assert err.value.code == 400 and b"must be a finite number" in err.value.read()


def test_other_model_is_not_found(server):
    with pytest.raises(openai.NotFoundError) as err:
        client(server).images.generate(prompt="x", model="dall-e-3")
    assert err.value.body["code"] == "model_not_found" and MODEL_ID in err.value.body["message"]


def test_models_and_health(server):
    assert [m.id for m in client(server).models.list()] == [MODEL_ID]
    with urllib.request.urlopen(f"{server}healthz") as response:
        assert response.status == 200


def test_api_key_from_the_environment_is_required(tiny):
    with serving(tiny, api_key="s3cret") as (url, _):
        with pytest.raises(openai.AuthenticationError) as wrong:
            client(url, key="guess").images.generate(prompt="x")
        assert wrong.value.status_code == 401 and wrong.value.body["code"] == "invalid_api_key"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(urllib.request.Request(f"{url}v1/models"))
        assert missing.value.code == 401 and b"LENS_TEST_API_KEY" in missing.value.read()
        assert len(client(url, key="s3cret").images.generate(prompt="x").data) == 1


def test_stream_reports_each_step_then_the_image(server):
    events = list(
        client(server).images.generate(prompt="a circle", stream=True, extra_body={"num_inference_steps": 3})
    )
    steps = [(e.step, e.steps) for e in events if e.type == "image_generation.progress"]
    assert steps == [(1, 3), (2, 3), (3, 3)]
    done = [e for e in events if e.type == "image_generation.completed"]
    assert len(done) == 1 and _png(done[0].b64_json).text["steps"] == "3"


def test_the_reasoner_rewrites_unless_the_request_says_no(tiny):
    from lens.world.reasoner import rewrite_prompt

    with serving(tiny, reasoner=rewrite_prompt) as (url, _):
        c = client(url)
        result = c.images.generate(prompt="a photo of a red circle", extra_body={"seed": 3})
        caption = rewrite_prompt("a photo of a red circle", 3)
        assert result.data[0].revised_prompt == caption
        image = _png(result.data[0].b64_json)
        assert (image.text["prompt"], image.text["caption"]) == ("a photo of a red circle", caption)
        plain = c.images.generate(prompt="a corgi", extra_body={"reasoner": False})
        assert plain.data[0].revised_prompt is None and "caption" not in _png(plain.data[0].b64_json).text
        with pytest.raises(openai.BadRequestError) as err:
            c.images.generate(prompt="a corgi")
        assert "could not read 'a corgi'" in err.value.body["message"]
        assert '"reasoner": false' in err.value.body["message"]
