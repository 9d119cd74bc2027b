"""`lens serve`: an OpenAI-compatible Images API and a web page over one pipeline (docs/serving.md)."""

from __future__ import annotations

import argparse
import os
import threading

from lens.errors import LensError


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve an OpenAI-compatible Images API and a web page",
        description="Serve POST /v1/images/generations (OpenAI's Images API), /v1/models, /healthz, "
        "/metrics and a web page at /, from one pipeline loaded once.",
    )
    p.add_argument("--model", help="pipeline folder or hub id (default: the bundled nano model)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    p.add_argument("--port", type=int, default=8000, help="port (0 picks a free one; default 8000)")
    p.add_argument("--max-queue", type=int, default=16, help="requests that may wait; more get 429")
    p.add_argument("--max-batch", type=int, default=4, help="images batched into one pipeline call")
    p.add_argument("--api-key-env", metavar="VAR", help="require 'Authorization: Bearer $VAR' on /v1")
    p.add_argument("--device", help="cuda, cpu, ... (default: cuda if available)")
    p.add_argument("--cpu-offload", action="store_true", help="keep only the running component on the GPU")
    p.add_argument("--url-ttl", type=float, default=3600.0, help="seconds a url response stays valid")
    p.add_argument(
        "--reasoner",
        choices=("auto", "nano", "none"),
        default="auto",
        help="rewrite prompts first: nano = the shapes world's rule-based reasoner; auto (default) = nano "
        'for the bundled model, none otherwise; a request can send "reasoner": false',
    )
    p.set_defaults(func=run)


def check_args(args: argparse.Namespace) -> str | None:
    """The API key (or None), after every check that needs no model."""
    if args.max_queue < 1:
        raise LensError(f"--max-queue must be at least 1, got {args.max_queue}")
    if args.max_batch < 1:
        raise LensError(f"--max-batch must be at least 1, got {args.max_batch}")
    if not 0 <= args.port <= 65535:
        raise LensError(f"--port must be between 0 and 65535, got {args.port}")
    if args.url_ttl <= 0:
        raise LensError(f"--url-ttl must be positive, got {args.url_ttl}")
    if args.api_key_env is None:
        return None
    key = os.environ.get(args.api_key_env, "")
    if not key:
        raise LensError(
            f"--api-key-env {args.api_key_env}: that environment variable is empty or not set; "
            f"export {args.api_key_env}=SECRET first"
        )
    return key


def run(args: argparse.Namespace) -> int:
    key = check_args(args)
    try:
        from lens.serve.api import create_app
        from lens.serve.images import UrlStore
        from lens.serve.metrics import Metrics
        from lens.serve.server import bind, make_server, url_of
        from lens.serve.worker import Worker
    except ImportError as err:
        raise LensError(f"lens serve needs the serve extra: pip install 'lens[serve]' ({err})") from None
    import torch

    from lens.inference import load_pipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    reasoner = None
    if args.reasoner == "nano" or (args.reasoner == "auto" and args.model is None):
        from lens.world.reasoner import rewrite_prompt as reasoner
    try:
        sock = bind(args.host, args.port)
    except OSError as err:
        raise LensError(
            f"cannot listen on {args.host}:{args.port} ({err.strerror or err}); pick another --port"
        ) from None
    worker = Worker(
        lambda: load_pipeline(args.model, device=device, cpu_offload=args.cpu_offload),
        Metrics(),
        max_queue=args.max_queue,
        max_batch=args.max_batch,
    ).start()
    model_id = args.model or "lens-nano"
    app = create_app(
        worker,
        model_id,
        api_key=key,
        api_key_env=args.api_key_env,
        reasoner=reasoner,
        urls=UrlStore(args.url_ttl),
    )
    server = make_server(app, log_level="info")
    url = url_of(sock)
    print(f"lens serve: {url} (model {model_id} on {device}, loading; /healthz says when ready)", flush=True)
    if key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"lens serve: warning: {args.host} is reachable from other machines and no --api-key-env is set"
        )

    def announce() -> None:  # a model that fails to load stops the server rather than 503 forever
        worker.loaded.wait()
        if worker.state == "failed":
            server.should_exit = True
        else:
            print(f"lens serve: ready at {url}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        worker.stop()
        sock.close()
    if worker.state == "failed":
        raise LensError(worker.error)
    return 0
