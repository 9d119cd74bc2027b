"""`lens serve`: an OpenAI-compatible Images API and a web page over one pipeline (docs/serving.md)."""

from __future__ import annotations

import argparse
import os
import re
import threading
from pathlib import Path

from lens.errors import LensError

_LORA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve an OpenAI-compatible Images API and a web page",
        description="Serve POST /v1/images/generations and /v1/images/edits (OpenAI's Images API), "
        "/v1/models, /healthz, /metrics and a web page at /, from one pipeline loaded once.",
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
    p.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help='a LoRA adapter requests may use by name ("lora": NAME); PATH a folder or its .safetensors '
        "file, or a hub id; repeat for more. Loaded once; clients can name only these",
    )
    p.add_argument(
        "--ray",
        action="store_true",
        help="serve through Ray Serve: --replicas copies of the server behind one endpoint (lens[ray]); "
        "on the cluster in $RAY_ADDRESS or started by `ray start` here, else on a new local one",
    )
    p.add_argument("--replicas", type=int, help="with --ray: replicas, each loading the model (default 1)")
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
    if args.replicas is not None and not args.ray:
        raise LensError("--replicas needs --ray (one process serves one pipeline)")
    if args.replicas is not None and args.replicas < 1:
        raise LensError(f"--replicas must be at least 1, got {args.replicas}")
    if args.api_key_env is None:
        return None
    key = os.environ.get(args.api_key_env, "")
    if not key:
        raise LensError(
            f"--api-key-env {args.api_key_env}: that environment variable is empty or not set; "
            f"export {args.api_key_env}=SECRET first"
        )
    return key


def lora_args(values: list[str], model_id: str) -> dict[str, str]:
    """`--lora NAME=PATH ...` as {name: absolute adapter file}, each file found before any model loads."""
    from lens.model.weights import lora_file

    loras: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not path:
            raise LensError(f"--lora {value}: give NAME=PATH, e.g. --lora watercolor=loras/watercolor")
        if not _LORA_NAME.fullmatch(name):
            raise LensError(f"--lora {value}: the name may hold letters, digits, '_' and '-' only")
        if name in loras or name == model_id:
            what = "another --lora" if name in loras else "the served model"
            raise LensError(f"--lora {value}: {name!r} is already the name of {what}")
        try:
            loras[name] = str(lora_file(path).resolve())
        except LensError as err:
            raise LensError(f"--lora {name}: {err}") from None
    return loras


def run(args: argparse.Namespace) -> int:
    key = check_args(args)
    model_id = args.model or "lens-nano"
    loras = lora_args(args.lora, model_id)
    try:
        from lens.serve.launch import ServeConfig
        from lens.serve.server import listen, make_server, url_of
    except ImportError as err:
        raise LensError(f"lens serve needs the serve extra: pip install 'lens[serve]' ({err})") from None
    local = args.model is not None and Path(args.model).exists()  # absolute: Ray replicas may run elsewhere
    config = ServeConfig(
        model_id=model_id,
        model=str(Path(args.model).resolve()) if local else args.model,
        device=args.device,
        cpu_offload=args.cpu_offload,
        max_queue=args.max_queue,
        max_batch=args.max_batch,
        api_key=key,
        api_key_env=args.api_key_env,
        reasoner=args.reasoner == "nano" or (args.reasoner == "auto" and args.model is None),
        url_ttl=args.url_ttl,
        loras=loras,
    )
    if key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"lens serve: warning: {args.host} is reachable from other machines and no --api-key-env is set"
        )
    if args.ray:
        return run_on_ray(config, args)
    sock = listen(args.host, args.port)
    worker, app = config.build()
    server = make_server(app, log_level="info")
    url = url_of(sock)
    print(
        f"lens serve: {url} (model {model_id} on {config.device_here()}, loading; /healthz says when ready)",
        flush=True,
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
    if server.interrupted:  # the CLI's Ctrl-C exit status (130), whatever asyncio made of the signal
        raise KeyboardInterrupt
    return 0


def run_on_ray(config, args: argparse.Namespace) -> int:
    """Deploy on Ray Serve, print the URL once every replica is ready, serve until Ctrl-C."""
    try:
        import ray
        import ray.serve  # Ray Serve's own dependencies (the ray[serve] extra) are checked here
    except ImportError as err:
        raise LensError(
            f"lens serve --ray needs the ray extra: pip install 'lens[serve,ray]' ({err})"
        ) from None
    from lens.serve.launch import ray_serving

    replicas = args.replicas or 1
    ray.init()
    try:
        print(f"lens serve: starting {replicas} Ray Serve replica(s) of {config.model_id}", flush=True)
        with ray_serving(config, replicas, args.host, args.port) as url:
            print(f"lens serve: ready at {url} ({replicas} replica(s))", flush=True)
            threading.Event().wait()  # until Ctrl-C
    finally:
        ray.shutdown()
    return 0
