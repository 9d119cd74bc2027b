"""What `lens serve` starts: the worker and the app over one pipeline, in this process, or in every
replica of a Ray Serve deployment (`lens serve --ray --replicas N`).

Under Ray Serve each replica is a Ray actor that loads its own pipeline and runs its own worker and
FastAPI app (Serve's ingress): N replicas are N copies of the one-process server behind one endpoint,
Ray's HTTP proxy spreading the requests over them. What must be one for all replicas is one: the store
behind `url` responses is a deployment of its own that every replica puts to and gets from, so a URL
one replica answered with is served by any. ray is imported only inside the functions that need it
(`lens[ray]`).
"""

from __future__ import annotations

import asyncio
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

from lens.errors import LensError
from lens.serve.api import create_app
from lens.serve.images import UrlStore
from lens.serve.metrics import Metrics
from lens.serve.server import listen, url_of
from lens.serve.worker import Worker

APP_NAME = "lens"


@dataclass(frozen=True)
class ServeConfig:
    """All a server needs to build itself; plain data, so Ray can ship it to the replicas."""

    model_id: str  # the name clients see (and send as `model`)
    model: str | None = None  # what load_pipeline loads (None: the bundled model)
    device: str | None = None  # None: cuda if the process that loads the pipeline has it
    cpu_offload: bool = False
    max_queue: int = 16
    max_batch: int = 4
    api_key: str | None = None
    api_key_env: str | None = None
    reasoner: bool = False  # the shapes world's rule-based prompt rewriter
    url_ttl: float = 3600.0
    loras: dict[str, str] = field(default_factory=dict)  # {adapter name: its file}

    def device_here(self) -> str:
        import torch

        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def build(self, urls=None):
        """(started worker, app): the pipeline loads in the worker's thread, the app answers 503 until
        then. `urls` defaults to a store of this process."""
        from lens.inference import load_pipeline

        device = self.device_here()
        worker = Worker(
            lambda: load_pipeline(self.model, device=device, cpu_offload=self.cpu_offload),
            Metrics(),
            max_queue=self.max_queue,
            max_batch=self.max_batch,
            loras=self.loras,
        ).start()
        reasoner = None
        if self.reasoner:  # the nano reasoner, laying its scenes out for the model's objects
            import functools

            from lens.inference import world_object_scale
            from lens.world.reasoner import rewrite_prompt

            reasoner = functools.partial(rewrite_prompt, object_scale=world_object_scale(self.model))
        app = create_app(
            worker,
            self.model_id,
            api_key=self.api_key,
            api_key_env=self.api_key_env,
            reasoner=reasoner,
            urls=UrlStore(self.url_ttl) if urls is None else urls,
        )
        return worker, app


# ---------------------------------------------------------------------- Ray Serve
class SharedUrls:
    """`UrlStore`'s put and get, on the store deployment all replicas share. The calls block: the app
    makes them off its event loop."""

    def __init__(self, handle):
        self._handle = handle

    def put(self, data: bytes) -> str:
        return self._handle.put.remote(data).result()

    def get(self, token: str) -> bytes | None:
        return self._handle.get.remote(token).result()


class LensReplica:
    """One replica: its pipeline, worker and app. The constructor returns once the pipeline has
    loaded, so Ray routes requests only to replicas that can answer them; a pipeline that fails to
    load fails the deployment with its error."""

    async def __init__(self, config: ServeConfig, urls):
        self.worker, self._app = config.build(SharedUrls(urls))
        await asyncio.to_thread(self.worker.loaded.wait)
        if self.worker.state == "failed":
            raise LensError(self.worker.error)

    def __serve_build_asgi_app__(self):
        return self._app

    def __del__(self):  # Ray Serve calls it when the replica stops
        self.worker.stop()


@contextmanager
def ray_serving(config: ServeConfig, replicas: int, host: str = "127.0.0.1", port: int = 8000):
    """Serve on the Ray cluster this process is connected to: `replicas` copies of the server
    behind Ray Serve's HTTP proxy on host:port (0 picks a free port). Yields the URL once every
    replica has loaded its pipeline; on exit the app is deleted, and Ray Serve shut down unless it
    serves other apps. A Serve already running on the cluster keeps its own host and port (Ray warns).
    """
    from ray import serve

    sock = listen(host, port)  # the port is free (or picked) before Ray is asked to take it
    url, port = url_of(sock), sock.getsockname()[1]
    sock.close()
    gpus = 1 if config.device_here().startswith("cuda") else 0
    try:
        serve.start(http_options={"host": host, "port": port})
    except Exception as err:  # Ray raises its own actor errors (not RuntimeError) when the proxy cannot start
        raise LensError(
            f"Ray Serve's HTTP proxy did not start on {host}:{port} ({type(err).__name__}); on a busy machine "
            "raise RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S in the cluster's environment"
        ) from None
    try:
        store = serve.deployment(UrlStore, name="lens-urls", ray_actor_options={"num_cpus": 0})
        replica = serve.deployment(
            serve.ingress()(LensReplica),
            name=APP_NAME,
            num_replicas=replicas,
            ray_actor_options={"num_cpus": 1, "num_gpus": gpus},
            # Ray may pass each replica this many requests at once: the worker's own queue (and its
            # 429s) decides what waits, plus room for the running batch and the cheap routes
            max_ongoing_requests=config.max_queue + config.max_batch + 16,
            max_constructor_retry_count=1,  # a pipeline that cannot load will not load on a retry
        )
        try:
            serve.run(replica.bind(config, store.bind(config.url_ttl)), name=APP_NAME, route_prefix="/")
        except RuntimeError as err:
            raise LensError(f"the Ray Serve deployment failed: {_why(serve) or err}") from None
        yield url
    finally:
        serve.delete(APP_NAME)
        if not serve.status().applications:  # Serve ran nothing else on this cluster
            serve.shutdown()


def _why(serve) -> str | None:
    """The failed replica's error (the last line of its traceback, as Ray Serve's status reports it,
    less the exception's class)."""
    status = serve.status().applications.get(APP_NAME)
    message = status and status.deployments.get(APP_NAME) and status.deployments[APP_NAME].message
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    return re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1]) if lines else None
