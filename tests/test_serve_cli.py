"""`lens serve` as a user starts it: a subprocess on port 0 that prints its URL and answers the openai
client; and the checks that refuse a bad command line before any model loads."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from lens.cli import main
from lens.testing import tiny_random_pipeline
from tests.serve_support import client


def test_serve_prints_its_url_and_answers(tmp_path):
    model = tmp_path / "tiny"
    tiny_random_pipeline(height=32, width=32).save_pretrained(model)
    env = os.environ | {"OMP_NUM_THREADS": "1", "LENS_KEY": "k1"}
    cmd = [
        sys.executable,
        "-m",
        "lens",
        "serve",
        "--model",
        str(model),
        "--port",
        "0",
        "--api-key-env",
        "LENS_KEY",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        first = proc.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+/)", first)[1]
        assert re.search(r"ready at http://127\.0\.0\.1:\d+/", proc.stdout.readline())
        result = client(url, key="k1").images.generate(prompt="a circle", model=str(model))
        assert len(result.data) == 1
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn shuts down, then the CLI reports the interrupt
        assert proc.wait(30) == 130


def test_a_model_that_cannot_load_stops_the_server(tmp_path, capsys):
    start = time.monotonic()
    assert main(["serve", "--model", str(tmp_path), "--port", "0"]) == 2
    assert "has no model_index.json" in capsys.readouterr().err
    assert time.monotonic() - start < 60


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--max-queue", "0"], "--max-queue must be at least 1"),
        (["--max-batch", "0"], "--max-batch must be at least 1"),
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--api-key-env", "LENS_SURELY_UNSET_VAR"], "LENS_SURELY_UNSET_VAR"),
        (["--replicas", "2"], "--replicas needs --ray"),
        (["--ray", "--replicas", "0"], "--replicas must be at least 1"),
        (["--lora", "ink"], "--lora ink: give NAME=PATH"),
        (["--lora", "my.ink=x"], "the name may hold letters, digits, '_' and '-' only"),
        (["--lora", "lens-nano=x"], "'lens-nano' is already the name of the served model"),
        (["--lora", "ink=/surely/missing/lora"], "--lora ink: LoRA /surely/missing/lora does not exist"),
    ],
)
def test_bad_options_are_refused(argv, words, capsys, monkeypatch):
    monkeypatch.delenv("LENS_SURELY_UNSET_VAR", raising=False)
    assert main(["serve", *argv]) == 2
    assert words in capsys.readouterr().err
