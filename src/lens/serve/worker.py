"""One model, many requests: a bounded queue and the single thread that owns the pipeline.

The pipeline is not thread-safe and a GPU runs one call at a time well, so exactly one thread ever
touches it. Requests that can share a call (same size, steps and guidance, and for edits the same
pipeline and strength, and the same LoRA adapter and scale; prompts, negatives, seeds and images are
per row) are batched up to `max_batch` images. Edits run on image-to-image / inpainting pipelines made
from the served one with `from_pipe`, sharing its modules. The server's LoRA adapters are loaded once,
after the pipeline, as peft adapters on its denoiser, and each call switches to its batch's adapter
(or turns them all off). A request whose client went away is dropped before it runs (its future is
cancelled); a call that raises fails only its own requests: a failed batch is re-run one request at a
time, so one bad request cannot fail its neighbours, and the thread goes on to the next.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from lens.serve.metrics import Metrics
from lens.serve.schemas import Defaults, GenerationRequest

log = logging.getLogger("lens.serve")


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class NotReady(Exception):
    pass


@dataclass
class Job:
    request: GenerationRequest
    # progress(step, steps) from the worker thread; the streaming route forwards it to its client
    progress: Callable[[int, int], None] | None = None
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    # set by the route when its client disconnects while the job runs (the future can't be cancelled then)
    abandoned: bool = False


class Worker:
    def __init__(
        self,
        load: Callable[[], object],
        metrics: Metrics,
        max_queue: int = 16,
        max_batch: int = 4,
        loras: dict[str, str] | None = None,
    ):
        """`loras`: {adapter name: its file} (checked by the caller), loaded once after the pipeline."""
        self._load, self.metrics = load, metrics
        self.max_queue, self.max_batch = max_queue, max_batch
        self.loras = dict(loras or {})
        self._adapter: tuple[str | None, float | None] = (None, None)  # what the denoiser runs now
        self.pipe = None
        self._editors: dict[str, object] = {}  # "img2img" / "inpaint" pipelines sharing pipe's modules
        self.state = "loading"  # -> "ready" | "failed"
        self.error: str | None = None
        self.loaded = threading.Event()  # set when state leaves "loading"
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._running: list[Job] = []
        self._batch_seconds = 1.0  # moving average, for Retry-After
        self._thread = threading.Thread(target=self._main, name="lens-serve-worker", daemon=True)

    # ------------------------------------------------------------------ called from the server
    def start(self) -> Worker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def defaults(self) -> Defaults:
        c = self.pipe.config
        return Defaults(c.default_height, c.default_width, c.default_steps, float(c.default_guidance_scale))

    def submit(self, job: Job) -> Job:
        with self._cond:
            if self.state != "ready":
                raise NotReady(self.error or "the model is loading")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(self.retry_after())
            self._queue.append(job)
            self._cond.notify()
        return job

    def cancel(self, job: Job) -> None:
        """The client of `job` went away: drop it from the queue (freeing its place), or, once it
        runs, mark it so a call that only abandoned jobs wait for stops early."""
        with self._cond:
            if job.future.cancel():
                if job in self._queue:
                    self._queue.remove(job)
            else:
                job.abandoned = True

    def depth(self) -> int:
        with self._cond:
            return len(self._queue)

    def running(self) -> int:
        return len(self._running)

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained by one batch's worth: the running call plus
        the batches ahead, at the recent seconds per call."""
        ahead = 1 + len(self._queue) / self.max_batch
        return max(1, math.ceil(self._batch_seconds * ahead))

    # ------------------------------------------------------------------ the worker thread
    def _main(self) -> None:
        try:
            self.pipe = self._load()
            self._load_loras()
            self.state = "ready"
        except Exception as err:  # a bad --model or --lora is reported, not a dead thread
            what = "the model" if self.pipe is None else "a LoRA adapter"
            self.state, self.error = "failed", f"could not load {what}: {err}"
            log.error(self.error)
        finally:
            self.loaded.set()
        while self.state == "ready":
            batch = self._take()
            if batch is None:
                return
            start = time.monotonic()
            self._run(batch)
            self._batch_seconds = 0.7 * self._batch_seconds + 0.3 * (time.monotonic() - start)

    def _load_loras(self) -> None:
        for name, path in self.loras.items():
            self.pipe.load_lora_weights(path, adapter_name=name)
        if self.loras:
            self.pipe.disable_lora()  # the base model until a request names an adapter

    def _use_lora(self, name: str | None, scale: float | None) -> None:
        """Switch the denoiser to adapter `name` at `scale` (None: all adapters off), if it isn't yet.
        The editors share the denoiser module, so they switch with it."""
        if (name, scale) == self._adapter:
            return
        if name is None:
            self.pipe.disable_lora()
        else:
            self.pipe.enable_lora()  # set_adapters alone does not undo disable_lora
            self.pipe.set_adapters([name], [scale])
        self._adapter = (name, scale)

    def _take(self) -> list[Job] | None:
        """The oldest live job and every compatible one behind it, up to max_batch images."""
        with self._cond:
            while True:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return None
                first = self._queue.popleft()
                if first.future.set_running_or_notify_cancel():  # False: its client went away
                    break
            batch, images, keep = [first], first.request.n, deque()
            key = first.request.batch_key()
            while self._queue:
                job = self._queue.popleft()
                if job.future.cancelled():
                    continue
                fits = images + job.request.n <= self.max_batch
                if fits and job.request.batch_key() == key and job.future.set_running_or_notify_cancel():
                    batch.append(job)
                    images += job.request.n
                else:
                    keep.append(job)
            self._queue = keep
            self._running = batch
            return batch

    def _run(self, batch: list[Job]) -> None:
        try:
            images = self._generate(batch)
        except Exception as err:
            if len(batch) > 1:  # find the request that fails; the others still get their images
                for job in batch:
                    self._run([job])
                return
            log.exception("request failed: %s", batch[0].request.prompt[:80])
            batch[0].future.set_exception(err)
            return
        finally:
            self._running = []
        self.metrics.batch(len(images))
        start = 0
        for job in batch:
            job.future.set_result(images[start : start + job.request.n])
            start += job.request.n

    def _generate(self, batch: list[Job]) -> list:
        import torch

        self._running = batch
        rows = [(job, k) for job in batch for k in range(job.request.n)]
        first = batch[0].request

        def on_step(pipe, i, t, tensors):
            for job in batch:
                if job.progress is not None:
                    job.progress(i + 1, pipe.num_timesteps)
            if all(job.abandoned for job in batch):  # nobody is waiting: skip the remaining steps
                pipe._interrupt = True
            return {}

        kwargs = dict(
            prompt=[job.request.text for job, _ in rows],
            negative_prompt=[job.request.negative_prompt for job, _ in rows],
            height=first.height,
            width=first.width,
            num_inference_steps=first.steps,
            guidance_scale=first.guidance,
            generator=[torch.Generator("cpu").manual_seed(job.request.seed + k) for job, k in rows],
            callback_on_step_end=on_step,
        )
        self._use_lora(first.lora, first.lora_scale)
        if first.kind == "generation":
            return self.pipe(**kwargs).images
        kwargs |= dict(image=[job.request.image for job, _ in rows], strength=first.strength)
        if first.kind == "inpaint":
            kwargs["mask_image"] = [job.request.mask for job, _ in rows]
        return self._editor(first.kind)(**kwargs).images

    def _editor(self, kind: str):
        """The image-to-image or inpainting pipeline over the served pipeline's very modules (made
        once, by diffusers' from_pipe: no second copy of any weight)."""
        if kind not in self._editors:
            from lens.img2img import LensImg2ImgPipeline
            from lens.inpaint import LensInpaintPipeline

            cls = LensInpaintPipeline if kind == "inpaint" else LensImg2ImgPipeline
            self._editors[kind] = cls.from_pipe(self.pipe)
        return self._editors[kind]
