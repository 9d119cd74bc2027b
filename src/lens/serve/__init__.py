"""`lens serve`: an OpenAI-compatible Images API (and a web page) over one LensPipeline.

- `schemas.py`: request bodies -> validated `GenerationRequest`s (the CLI's one-line messages).
- `errors.py`: `ApiError` and OpenAI's error JSON.
- `worker.py`: the bounded queue and the one thread that owns the pipeline and batches requests.
- `images.py`: PNG bytes with the parameters in text chunks; the expiring store behind `url` responses.
- `metrics.py`: counters and the Prometheus text of `/metrics`.
- `api.py`: the FastAPI app (routes, auth, streaming); `page.py`: the web page at `/`.
- `server.py`: uvicorn on a socket we bind ourselves (so port 0 works and the URL is known).
- `launch.py`: `ServeConfig`, which builds the worker and the app, in this process or in each replica of a
  Ray Serve deployment (`lens serve --ray`).

Nothing here is imported by `import lens`; fastapi and uvicorn come with the `serve` extra, Ray Serve
with the `ray` extra (imported only by `--ray`).
"""
