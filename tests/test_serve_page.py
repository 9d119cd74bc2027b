"""The web page at / in headless Chromium (Debian's, via Playwright's Python API): type a prompt,
generate, watch the progress bar move, see the image, download it and read its PNG text chunks."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from tests.serve_support import Controlled, load_tiny, serving

CHROMIUM = "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} missing (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def test_generate_watch_progress_and_download(tmp_path, browser):
    pipe = Controlled(load_tiny(tmp_path / "tiny"))
    pipe.step_delay = 0.4  # slow enough for the page to show steps between the first and the last
    with serving(pipe) as (url, _):
        page = browser.new_page(accept_downloads=True)
        page.goto(url)
        page.wait_for_function("document.getElementById('status').textContent === 'ready'")
        page.fill("#prompt", "a red circle above a blue square")
        page.fill("#steps", "5")
        page.fill("#guidance", "2")
        page.click("#generate")
        # the bar moves: a step strictly between none and all, then the image
        page.wait_for_function(
            "(() => { const p = document.getElementById('progress'); return p.max == 5 && p.value > 0 && p.value < 5; })()"
        )
        page.wait_for_selector("#gallery figure img", timeout=60_000)
        assert page.eval_on_selector("#progress", "p => p.value") == 5
        assert page.text_content("#status") == "done"
        seed = int(page.input_value("#seed"))
        caption = page.text_content("#gallery figcaption")
        assert f"seed {seed}" in caption and "5 steps" in caption
        with page.expect_download() as info:
            page.click("#gallery a.download")
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(path)
        image = Image.open(path)
        assert info.value.suggested_filename == f"lens-{seed}.png"
        assert image.text["prompt"] == "a red circle above a blue square"
        assert (image.text["seed"], image.text["steps"], image.text["guidance"]) == (str(seed), "5", "2.0")
        assert image.text["size"] == "32x32"


def test_a_bad_request_shows_its_message(tmp_path, browser):
    with serving(load_tiny(tmp_path / "tiny")) as (url, _):
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("document.getElementById('status').textContent === 'ready'")
        page.fill("#prompt", "x")
        page.select_option("#preset", "custom")
        page.fill("#width", "40")
        page.click("#generate")
        page.wait_for_function("document.getElementById('status').className === 'error'")
        assert "width=40 is not a multiple of 16" in page.text_content("#status")
