"""The FastAPI app: OpenAI's Images API routes, auth, streaming progress, the web page's config.

Every error leaves as OpenAI's error JSON (`errors.py`) so the official clients raise their usual
exceptions. The pipeline is touched only by the worker thread; routes wait on its futures.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import time

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from lens.errors import LensError
from lens.resolution import RATIOS, preset
from lens.serve.edits import parse_edit, read_form
from lens.serve.errors import ApiError, error_body
from lens.serve.images import UrlStore, png_bytes
from lens.serve.page import index_html
from lens.serve.schemas import MAX_N, GenerationRequest, parse_generation
from lens.serve.worker import Job, NotReady, QueueFull, Worker

GONE = 499  # nginx's "client closed request": counted in /metrics for requests dropped unanswered


def create_app(
    worker: Worker,
    model_id: str,
    *,
    api_key: str | None = None,
    api_key_env: str | None = None,
    reasoner=None,
    urls: UrlStore | None = None,
) -> FastAPI:
    """The app over a started (or starting) worker. `api_key` (read by the caller from the environment
    variable `api_key_env`) guards the /v1 routes; `reasoner` is f(prompt, seed) -> caption or None.
    `urls` is any store with put(png) -> token and get(token) -> png or None (called off the event
    loop: under Ray Serve it is a deployment that all replicas share)."""
    app = FastAPI(title="Lens", docs_url=None, redoc_url=None, openapi_url=None)
    urls = UrlStore() if urls is None else urls  # (an empty store is falsy)
    metrics = worker.metrics
    created = int(time.time())

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError):
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, err: HTTPException):  # unknown routes, wrong methods
        return JSONResponse(error_body(err.status_code, str(err.detail)), status_code=err.status_code)

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            raise ApiError(
                401,
                f"missing API key: send the header 'Authorization: Bearer KEY' (the key in ${api_key_env})",
                code="invalid_api_key",
            )
        if not hmac.compare_digest(header[7:].encode(), api_key.encode()):
            raise ApiError(401, "wrong API key", code="invalid_api_key")

    def ready() -> None:
        if worker.state == "loading":
            raise ApiError(
                503,
                "the model is still loading; retry shortly",
                code="model_loading",
                headers={"Retry-After": "5"},
            )
        if worker.state == "failed":
            raise ApiError(503, worker.error or "the model failed to load", code="model_unavailable")

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return index_html()

    @app.get("/healthz")
    async def healthz():
        status = {"loading": 503, "failed": 503}.get(worker.state, 200)
        body = {"status": "ok" if status == 200 else worker.state, "model": model_id}
        if worker.error:
            body["error"] = worker.error
        return JSONResponse(body, status_code=status)

    @app.get("/metrics")
    async def metrics_text():
        text = metrics.render(worker.depth(), worker.running(), worker.state == "ready")
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @app.get("/ui/config")
    async def ui_config():
        ready()
        d = worker.defaults()
        presets = {r: "{1}x{0}".format(*preset(r, 1024)) for r in RATIOS}
        return {
            "model": model_id,
            "defaults": {"size": f"{d.width}x{d.height}", "steps": d.steps, "guidance": d.guidance},
            "presets": presets,
            "max_n": MAX_N,
            "reasoner": reasoner is not None,
            "api_key_required": api_key is not None,
        }

    @app.get("/v1/models")
    async def models(request: Request):
        authorize(request)
        served = {"id": model_id, "object": "model", "created": created, "owned_by": "lens"}
        # the LoRA adapters as vLLM lists them: models whose parent is the served one
        adapters = [served | {"id": name, "parent": model_id} for name in sorted(worker.loras)]
        return {"object": "list", "data": [served, *adapters]}

    @app.get("/v1/images/files/{name}")
    async def image_file(name: str):
        data = await asyncio.to_thread(urls.get, name.removesuffix(".png"))
        if data is None:
            raise ApiError(
                404, "this image URL has expired or never existed; generate it again", code="expired"
            )
        return Response(data, media_type="image/png")

    @app.post("/v1/images/generations")
    async def generations(request: Request):
        async def parse() -> GenerationRequest:
            body = await _json(request)
            return parse_generation(
                body, served_model=model_id, defaults=worker.defaults(), reasoner=reasoner, loras=worker.loras
            )

        return await _answer(request, parse)

    @app.post("/v1/images/edits")
    async def edits(request: Request):
        async def parse() -> GenerationRequest:
            fields, files = await read_form(request)
            return await asyncio.to_thread(  # decodes the images off the event loop
                parse_edit,
                fields,
                files,
                served_model=model_id,
                defaults=worker.defaults(),
                reasoner=reasoner,
                loras=worker.loras,
            )

        return await _answer(request, parse)

    async def _answer(request: Request, parse):
        """Parse (after auth and readiness), queue, wait, answer: OpenAI's response, or its stream."""
        start = time.monotonic()
        try:
            authorize(request)
            ready()
            req = await parse()
            if req.stream:
                return _stream(request, req, start)
            job = _submit(Job(req))
            images = await _wait(request, job)
            if images is None:
                metrics.request(GONE)
                return Response(status_code=GONE)
            items = await asyncio.to_thread(_items, req, images, str(request.base_url))
        except ApiError as err:
            metrics.request(err.status)
            raise
        metrics.request(200, time.monotonic() - start)
        return {
            "created": int(time.time()),
            "data": items,
            "output_format": "png",
            "size": f"{req.width}x{req.height}",
            "background": "opaque",
            "quality": "auto",
        }

    def _submit(job: Job) -> Job:
        try:
            return worker.submit(job)
        except QueueFull as err:
            raise ApiError(
                429,
                f"the queue is full ({worker.max_queue} waiting); retry in {err.retry_after} s",
                code="queue_full",
                headers={"Retry-After": str(err.retry_after)},
            ) from None
        except NotReady:
            ready()
            raise

    def _items(req: GenerationRequest, images, base_url: str) -> list[dict]:
        return [_item(req, png, base_url) for png in _encode_all(req, images)]

    def _encode_all(req: GenerationRequest, images) -> list[bytes]:
        return [png_bytes(image, _params(req, k)) for k, image in enumerate(images)]

    def _params(req: GenerationRequest, k: int) -> dict:
        params = {"prompt": req.prompt}
        if req.text != req.prompt:
            params["caption"] = req.text
        params |= {
            "negative_prompt": req.negative_prompt,
            "seed": req.seed + k,
            "steps": req.steps,
            "guidance": req.guidance,
            "size": f"{req.width}x{req.height}",
            "model": model_id,
        }
        if req.lora is not None:
            params |= {"lora": req.lora, "lora_scale": req.lora_scale}
        if req.image is not None:  # an edit: which pipeline, how strongly
            params |= {"edit": req.kind, "strength": req.strength}
        return params

    def _item(req: GenerationRequest, png: bytes, base_url: str) -> dict:
        item = {"revised_prompt": req.text if req.text != req.prompt else None}
        if req.response_format == "url":
            item["url"] = f"{base_url.rstrip('/')}/v1/images/files/{urls.put(png)}.png"
        else:
            item["b64_json"] = base64.b64encode(png).decode()
        return item

    def _stream(request: Request, req: GenerationRequest, start: float) -> StreamingResponse:
        """Server-sent events: `image_generation.progress` (step i of N) while it runs, then one
        `image_generation.completed` per image (OpenAI's event name and fields, plus seed and index);
        `image_edit.*` for edits, as OpenAI names those."""
        kind = "image_generation" if req.image is None else "image_edit"
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        job = Job(req, progress=lambda i, n: loop.call_soon_threadsafe(events.put_nowait, (i, n)))
        job.future.add_done_callback(lambda _: loop.call_soon_threadsafe(events.put_nowait, None))
        _submit(job)  # a full queue is a plain 429 before any event

        async def body():
            finished = False
            try:
                yield _sse(
                    f"{kind}.queued",
                    {"type": f"{kind}.queued", "queue_depth": worker.depth()},
                )
                while (event := await events.get()) is not None:
                    yield _sse(
                        f"{kind}.progress",
                        {"type": f"{kind}.progress", "step": event[0], "steps": event[1]},
                    )
                try:
                    images = job.future.result()
                    data = await asyncio.to_thread(_encode_all, req, images)
                except Exception as err:
                    finished = True
                    status = 400 if isinstance(err, LensError) else 500
                    metrics.request(status)
                    yield _sse(
                        "error", error_body(status, f"the generation failed: {err}", code="generation_failed")
                    )
                    return
                for k, png in enumerate(data):
                    yield _sse(
                        f"{kind}.completed",
                        {
                            "type": f"{kind}.completed",
                            "b64_json": base64.b64encode(png).decode(),
                            "created_at": int(time.time()),
                            "size": f"{req.width}x{req.height}",
                            "quality": "auto",
                            "background": "opaque",
                            "output_format": "png",
                            "index": k,
                            "seed": req.seed + k,
                            "revised_prompt": req.text if req.text != req.prompt else None,
                            "usage": {
                                "input_tokens": 0,
                                "output_tokens": 0,
                                "total_tokens": 0,
                                "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
                            },
                        },
                    )
                finished = True
                metrics.request(200, time.monotonic() - start)
            finally:
                if not finished:  # the client went away: drop the job, or tell the worker nobody waits
                    worker.cancel(job)
                    metrics.request(GONE)

        return StreamingResponse(
            body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def _wait(request: Request, job: Job):
        """The job's images, or None once the client has disconnected (the job is then dropped)."""
        future = asyncio.wrap_future(job.future)
        while True:
            try:
                done, _ = await asyncio.wait({future}, timeout=0.25)
            except asyncio.CancelledError:  # how Ray Serve tells a replica that the client went away
                worker.cancel(job)
                metrics.request(GONE)
                raise
            if done:
                try:
                    return future.result()
                except LensError as err:
                    raise ApiError(400, str(err), code="invalid_value") from None
                except Exception as err:
                    raise ApiError(500, f"the generation failed: {err}", code="generation_failed") from None
            if await request.is_disconnected():
                worker.cancel(job)
                return None

    return app


async def _json(request: Request):
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError as err:
        raise ApiError(400, f"the request body is not valid JSON ({err})", code="invalid_json") from None


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"
