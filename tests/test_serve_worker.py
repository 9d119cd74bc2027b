"""One model, many requests: batching, the bounded queue (429), failures, disconnects, loading (503),
and /metrics, through the openai client against a running server whose pipeline the test controls."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import urllib.error
import urllib.request
from urllib.parse import urlparse

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lens.serve.api import create_app
from tests.serve_support import MODEL_ID, Controlled, client, load_tiny, serving, wait_for


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_tiny(tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture
def pipe(tiny):
    return Controlled(tiny)


def _metrics(url: str) -> dict:
    with urllib.request.urlopen(f"{url}metrics") as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def raw_post(url: str, body: bytes) -> socket.socket:
    """A generation request sent on a bare socket, so the test can hang up without reading the answer."""
    host = urlparse(url)
    raw = socket.create_connection((host.hostname, host.port))
    raw.sendall(
        b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return raw


def test_compatible_requests_share_one_call_and_others_wait(pipe):
    with serving(pipe, max_batch=4) as (url, worker), concurrent.futures.ThreadPoolExecutor(8) as pool:
        c = client(url)
        pipe.hold()
        first = pool.submit(c.images.generate, prompt="p0")
        assert pipe.entered.wait(30)
        later = []
        for i, args in enumerate(({"n": 2}, {"size": "64x32"}, {"n": 1}, {"n": 2})):  # queued in this order
            later.append(pool.submit(c.images.generate, prompt=f"p{i + 1}", **args))
            wait_for(lambda i=i: worker.depth() == i + 1, what=f"{i + 1} queued requests")
        pipe.gate.set()
        for f in [first, *later]:
            f.result(timeout=60)
        # p1 (2 images) takes p3 (1) past p2 (another size); p4's 2 would pass max_batch 4, so it waits
        assert pipe.calls == [["p0"], ["p1", "p1", "p3"], ["p2"], ["p4", "p4"]]
        m = _metrics(url)
        assert m[("lens_batches_total", (("images", "3"),))] == 1
        assert m[("lens_images_total", ())] == 7


def test_a_full_queue_is_a_429_with_retry_after(pipe):
    with serving(pipe, max_queue=1) as (url, worker), concurrent.futures.ThreadPoolExecutor(4) as pool:
        c = client(url)
        pipe.hold()
        running = pool.submit(c.images.generate, prompt="running")
        assert pipe.entered.wait(30)
        waiting = pool.submit(c.images.generate, prompt="waiting")
        wait_for(lambda: worker.depth() == 1, what="a queued request")
        with pytest.raises(openai.RateLimitError) as err:
            c.images.generate(prompt="one too many")
        assert err.value.status_code == 429 and err.value.body["code"] == "queue_full"
        assert int(err.value.response.headers["retry-after"]) >= 1
        pipe.gate.set()
        assert len(running.result(60).data) == 1 and len(waiting.result(60).data) == 1
        assert _metrics(url)[("lens_requests_total", (("status", "429"),))] == 1


def test_a_failing_request_fails_alone_and_the_worker_goes_on(pipe):
    with serving(pipe) as (url, worker), concurrent.futures.ThreadPoolExecutor(4) as pool:
        c = client(url)
        with pytest.raises(openai.InternalServerError) as err:
            c.images.generate(prompt="boom")
        assert "boom" in err.value.body["message"] and err.value.body["type"] == "server_error"
        # in one batch with a good request, only the bad one fails
        pipe.hold()
        blocker = pool.submit(c.images.generate, prompt="first")
        assert pipe.entered.wait(30)
        bad = pool.submit(c.images.generate, prompt="boom again")
        wait_for(lambda: worker.depth() == 1, what="a queued request")
        good = pool.submit(c.images.generate, prompt="fine")
        wait_for(lambda: worker.depth() == 2, what="two queued requests")
        pipe.gate.set()
        assert len(blocker.result(60).data) == 1 and len(good.result(60).data) == 1
        with pytest.raises(openai.InternalServerError):
            bad.result(60)
        assert ["boom again", "fine"] in pipe.calls and ["fine"] in pipe.calls  # the batch, then alone
        assert len(c.images.generate(prompt="still serving").data) == 1


def test_a_request_whose_client_left_is_dropped_before_it_runs(pipe):
    with serving(pipe) as (url, worker), concurrent.futures.ThreadPoolExecutor(2) as pool:
        c = client(url)
        pipe.hold()
        blocker = pool.submit(c.images.generate, prompt="first")
        assert pipe.entered.wait(30)
        with raw_post(url, b'{"prompt": "nobody waits for me"}'):
            wait_for(lambda: worker.depth() == 1, what="the request to queue")
        wait_for(lambda: worker.depth() == 0, what="the abandoned request to leave the queue")
        pipe.gate.set()
        blocker.result(60)
        assert len(c.images.generate(prompt="after").data) == 1
        assert ["nobody waits for me"] not in pipe.calls
        assert _metrics(url)[("lens_requests_total", (("status", "499"),))] == 1


def test_503_while_loading_then_ready(tiny):
    loaded = threading.Event()

    def load():
        assert loaded.wait(60)
        return tiny

    with serving(load=load) as (url, worker):
        c = client(url)
        with pytest.raises(openai.InternalServerError) as err:
            c.images.generate(prompt="too early")
        assert err.value.status_code == 503 and err.value.body["code"] == "model_loading"
        with pytest.raises(urllib.error.HTTPError) as health:
            urllib.request.urlopen(f"{url}healthz")
        assert health.value.code == 503
        assert _metrics(url)[("lens_model_loaded", ())] == 0
        loaded.set()
        wait_for(lambda: worker.state == "ready", what="loading")
        assert len(c.images.generate(prompt="now").data) == 1


def test_metrics_text_parses_and_counts(pipe):
    with serving(pipe) as (url, _):
        c = client(url)
        c.images.generate(prompt="one", n=2)
        with pytest.raises(openai.BadRequestError):
            c.images.generate(prompt="bad", size="1x1")
        m = _metrics(url)
    assert m[("lens_requests_total", (("status", "200"),))] == 1
    assert m[("lens_requests_total", (("status", "400"),))] == 1
    assert m[("lens_images_total", ())] == 2 and m[("lens_queue_depth", ())] == 0
    assert (
        m[("lens_request_seconds_count", ())] == 1
        and m[("lens_request_seconds_bucket", (("le", "+Inf"),))] == 1
    )
    assert m[("lens_images_per_second", ())] > 0


def test_a_stream_whose_reader_left_is_dropped_too(pipe):
    # the web page's path: a tab closed while its request waits
    with serving(pipe) as (url, worker), concurrent.futures.ThreadPoolExecutor(1) as pool:
        pipe.hold()
        blocker = pool.submit(client(url).images.generate, prompt="first")
        assert pipe.entered.wait(30)
        with raw_post(url, b'{"prompt": "closed tab", "stream": true}') as raw:
            raw.settimeout(30)
            seen = b""
            while b"image_generation.queued" not in seen:  # headers first, then the first event
                chunk = raw.recv(4096)
                assert chunk, f"the server closed the stream early: {seen!r}"
                seen += chunk
            assert worker.depth() == 1
        wait_for(lambda: worker.depth() == 0, what="the abandoned stream to leave the queue")
        pipe.gate.set()
        blocker.result(60)
        assert ["closed tab"] not in pipe.calls
        assert _metrics(url)[("lens_requests_total", (("status", "499"),))] == 1


async def _post_then_cancel(app, worker, body: bytes) -> None:
    """Call the ASGI app with a generation request and cancel it once queued, as Ray Serve cancels a
    replica's request when its client disconnects (no http.disconnect message reaches the app)."""
    path = "/v1/images/generations"
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"x")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client stays connected, silent

    async def send(message):
        pass

    task = asyncio.create_task(app(scope, receive, send))
    while worker.depth() == 0:
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_cancelled_request_is_dropped_as_under_ray_serve(pipe):
    with serving(pipe) as (url, worker), concurrent.futures.ThreadPoolExecutor(1) as pool:
        pipe.hold()
        blocker = pool.submit(client(url).images.generate, prompt="first")
        assert pipe.entered.wait(30)
        asyncio.run(
            asyncio.wait_for(
                _post_then_cancel(create_app(worker, MODEL_ID), worker, b'{"prompt": "gone"}'), 30
            )
        )
        assert worker.depth() == 0  # it left the queue at once
        pipe.gate.set()
        blocker.result(60)
        assert ["gone"] not in pipe.calls
        assert _metrics(url)[("lens_requests_total", (("status", "499"),))] == 1
