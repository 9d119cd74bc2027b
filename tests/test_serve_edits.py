"""POST /v1/images/edits through the official openai client against a running server on 127.0.0.1:
OpenAI's mask convention (transparent = edit) onto the inpainting pipeline, no mask onto image-to-image,
the same worker queue, and clear 400s."""

from __future__ import annotations

import base64
import io
import urllib.error
import urllib.request

import numpy as np
import openai
import PIL.Image
import pytest
import torch

from lens.img2img import LensImg2ImgPipeline
from lens.inpaint import LensInpaintPipeline
from tests.serve_support import client, load_tiny, serving

STEPS = {"num_inference_steps": 2}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, worker, the tiny pipeline it serves)."""
    pipe = load_tiny(tmp_path_factory.mktemp("edits") / "tiny")
    with serving(pipe) as (url, worker):
        yield url, worker, pipe


def _png(image: PIL.Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _picture(height=32, width=48) -> PIL.Image.Image:
    return PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _openai_mask(height=32, width=48, edit_left=24) -> PIL.Image.Image:
    """OpenAI's mask: opaque, with the left `edit_left` columns fully transparent (the area to edit)."""
    mask = PIL.Image.new("RGBA", (width, height), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, edit_left, height))
    return mask


def _file(image: PIL.Image.Image, name="image.png"):
    return (name, _png(image), "image/png")


def _decoded(b64: str) -> PIL.Image.Image:
    image = PIL.Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def _pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_a_masked_edit_is_the_inpainting_pipeline_with_the_transparent_area_white(served):
    url, worker, tiny = served
    result = client(url).images.edit(
        image=_file(_picture()),
        mask=_file(_openai_mask(), "mask.png"),
        prompt="a red circle",
        n=2,
        response_format="b64_json",
        extra_body={"seed": 5, **STEPS},
    )
    images = [_decoded(d.b64_json) for d in result.data]
    assert [im.size for im in images] == [(48, 32), (48, 32)]  # size "auto": the image's own
    assert [im.text["seed"] for im in images] == ["5", "6"]
    assert (images[0].text["edit"], images[0].text["strength"]) == ("inpaint", "1.0")
    # the same call made directly, with the pipeline's mask convention: white = repaint
    white_left = PIL.Image.new("L", (48, 32), 0)
    white_left.paste(255, (0, 0, 24, 32))
    direct = LensInpaintPipeline.from_pipe(tiny)(
        "a red circle",
        image=_picture(),
        mask_image=white_left,
        generator=torch.Generator().manual_seed(6),
        **STEPS,
    ).images[0]
    assert np.abs(_pixels(images[1]) - _pixels(direct)).max() <= 1
    assert isinstance(worker._editors["inpaint"], LensInpaintPipeline)
    assert worker._editors["inpaint"].transformer is tiny.transformer  # the served modules, not a copy


def test_an_edit_without_mask_is_image_to_image_at_strength(served):
    url, _, tiny = served
    result = client(url).images.edit(
        image=_file(_picture()),
        prompt="a blue square",
        size="64x64",
        extra_body={"seed": 2, "strength": 0.5, **STEPS},
    )
    image = _decoded(result.data[0].b64_json)
    assert image.size == (64, 64) and (image.text["edit"], image.text["strength"]) == ("img2img", "0.5")
    direct = LensImg2ImgPipeline.from_pipe(tiny)(
        "a blue square",
        image=_picture(),
        strength=0.5,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(2),
        **STEPS,
    ).images[0]
    assert np.abs(_pixels(image) - _pixels(direct)).max() <= 1


def test_edits_stream_as_openai_names_the_events(served):
    url, _, _ = served
    events = list(
        client(url).images.edit(image=_file(_picture()), prompt="a circle", stream=True, extra_body=STEPS)
    )
    assert [e.type for e in events] == [
        "image_edit.queued",
        "image_edit.progress",
        "image_edit.progress",
        "image_edit.completed",
    ]
    assert _decoded(events[-1].b64_json).text["edit"] == "img2img"


@pytest.mark.parametrize(
    ("files", "body", "param", "words"),
    [
        ({"image": ("x.png", b"hello", "image/png")}, {}, "image", "not an image file Pillow can read"),
        ({"image": _file(_picture(30, 48))}, {}, "size", "is 30x48 (HxW): height=30 is not a multiple of 16"),
        ({"mask": _file(_openai_mask(32, 32))}, {}, "mask", "the mask is 32x32 but the image is 32x48"),
        ({"mask": _file(_openai_mask(edit_left=0))}, {}, "mask", "nothing to edit"),
        ({}, {"size": "100x64"}, "size", "width=100 is not a multiple of 16; use 96 or 112"),
        ({}, {"n": 0}, "n", "n must be between 1 and 10"),
        ({}, {"extra_body": {"strength": 2}}, "strength", "strength must be a number in (0, 1]"),
        ({}, {"extra_body": {"seed": "x"}}, "seed", "seed must be an integer"),
        ({}, {"extra_body": {"aspect_ratio": "1:1"}}, "aspect_ratio", "unknown field 'aspect_ratio'"),
        ({"image": [_file(_picture()), _file(_picture())]}, {}, "image", "one image per request"),
    ],
)
def test_bad_input_is_a_400_with_the_field_and_a_clear_message(served, files, body, param, words):
    url, _, _ = served
    args = {"image": _file(_picture()), "prompt": "a red circle"} | files | body
    with pytest.raises(openai.BadRequestError) as err:
        client(url).images.edit(**args)
    assert err.value.status_code == 400
    assert err.value.body["param"] == param and err.value.body["type"] == "invalid_request_error"
    assert words in err.value.body["message"]


def test_a_json_body_is_refused_in_one_line(served):
    url, _, _ = served
    request = urllib.request.Request(
        f"{url}v1/images/edits",
        data=b'{"prompt": "x"}',
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request)
    assert err.value.code == 400 and b"multipart/form-data" in err.value.read()


def test_an_alpha_less_mask_is_read_white_is_edit():
    from lens.serve.edits import edit_area

    grey = PIL.Image.new("L", (4, 2), 0)
    grey.putpixel((3, 1), 255)
    assert np.asarray(edit_area(grey)).nonzero() == (np.array([1]), np.array([3]))
    rgba = PIL.Image.new("RGBA", (4, 2), (255, 255, 255, 255))
    rgba.putpixel((0, 0), (255, 255, 255, 0))  # only alpha counts: transparent = edit
    rgba.putpixel((1, 0), (255, 255, 255, 128))  # partly transparent: kept, as OpenAI says "fully"
    assert np.asarray(edit_area(rgba)).nonzero() == (np.array([0]), np.array([0]))


def test_edits_need_the_key_when_one_is_set(served):
    with serving(served[2], api_key="s3cret") as (url, _):
        with pytest.raises(openai.AuthenticationError):
            client(url, key="guess").images.edit(image=_file(_picture()), prompt="x", extra_body=STEPS)
        result = client(url, key="s3cret").images.edit(image=_file(_picture()), prompt="x", extra_body=STEPS)
        assert len(result.data) == 1
