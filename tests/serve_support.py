"""Shared by the tests/test_serve_*.py files: a tiny pipeline loaded the way `lens serve` loads one, a
wrapper that lets a test hold the worker inside a call or make a call fail, and a running server on
127.0.0.1 (a free port) with the official openai client pointed at it."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import openai

from lens.serve.api import create_app
from lens.serve.metrics import Metrics
from lens.serve.server import ServerThread
from lens.serve.worker import Worker

MODEL_ID = "lens-tiny"
KEY_ENV = "LENS_TEST_API_KEY"


def load_tiny(folder):
    """Save a tiny random pipeline and load it back through lens.inference (the server's path)."""
    from lens.inference import load_pipeline
    from lens.testing import tiny_random_pipeline

    if not (folder / "model_index.json").exists():
        tiny_random_pipeline(seed=0, height=32, width=32).save_pretrained(folder)
    return load_pipeline(str(folder), device="cpu")


class Controlled:
    """The real pipeline behind a gate: after `hold()` the worker blocks inside its next call
        (`entered` tells when it got there) until `gate` is set; a prompt containing "boom" raises; `step_delay` slows each
        step so a browser can watch the progress bar move. `calls` records every call's prompts. Everything
    else (config, the LoRA methods, ...) is the pipeline's own."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.calls: list[list[str]] = []
        self.step_delay = 0.0

    def hold(self) -> None:
        """Block the worker inside its next call; `entered` is set once it is there."""
        self.entered.clear()
        self.gate.clear()

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, **kwargs):
        self.calls.append(list(kwargs["prompt"]))
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        if any("boom" in p for p in kwargs["prompt"]):
            raise RuntimeError("boom: this prompt fails on purpose")
        callback = kwargs["callback_on_step_end"]

        def slow(pipe, i, t, tensors):
            time.sleep(self.step_delay)
            return callback(pipe, i, t, tensors)

        return self.pipe(**(kwargs | {"callback_on_step_end": slow}))


@contextmanager
def serving(
    pipe=None, *, load=None, max_queue=8, max_batch=4, api_key=None, urls=None, reasoner=None, loras=None
):
    """(base URL, worker) of a server on 127.0.0.1 over `pipe` (or whatever `load()` returns), with
    the LoRA adapters `loras` ({name: file})."""
    worker = Worker(
        load or (lambda: pipe), Metrics(), max_queue=max_queue, max_batch=max_batch, loras=loras
    ).start()
    app = create_app(worker, MODEL_ID, api_key=api_key, api_key_env=KEY_ENV, urls=urls, reasoner=reasoner)
    try:
        with ServerThread(app) as url:
            yield url, worker
    finally:
        if isinstance(pipe, Controlled):
            pipe.gate.set()
        worker.stop()


def client(url: str, key: str = "unused", **kwargs) -> openai.OpenAI:
    # max_retries=0: the client would otherwise retry 429s and 5xx by itself and hide them
    return openai.OpenAI(base_url=f"{url}v1", api_key=key, max_retries=0, timeout=60, **kwargs)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
