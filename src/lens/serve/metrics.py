"""Counters behind `GET /metrics`, written as Prometheus text (format 0.0.4) by hand: a few lines do
not need a client library."""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter, deque

# Request latency buckets in seconds: a tiny model answers in tens of ms, the 4.1B one in tens of s.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
RATE_WINDOW_S = 60.0  # images/s is measured over the last minute


class Metrics:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # by HTTP status
        self.batches: Counter[int] = Counter()  # by images in one pipeline call
        self._latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self.images_total = 0
        self._recent: deque[tuple[float, int]] = deque()  # (time, images) of recent batches

    def request(self, status: int, seconds: float | None = None) -> None:
        with self._lock:
            self.requests[str(status)] += 1
            if seconds is not None:
                self._latency[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
                self._latency_sum += seconds

    def batch(self, images: int) -> None:
        with self._lock:
            self.batches[images] += 1
            self.images_total += images
            self._recent.append((self._clock(), images))

    def images_per_second(self) -> float:
        with self._lock:
            now = self._clock()
            while self._recent and self._recent[0][0] < now - RATE_WINDOW_S:
                self._recent.popleft()
            return sum(n for _, n in self._recent) / RATE_WINDOW_S

    def render(self, queue_depth: int, running: int, loaded: bool) -> str:
        rate = self.images_per_second()
        with self._lock:
            lines = [
                "# HELP lens_queue_depth Requests waiting for the worker.",
                "# TYPE lens_queue_depth gauge",
                f"lens_queue_depth {queue_depth}",
                "# HELP lens_running_requests Requests in the pipeline call now running.",
                "# TYPE lens_running_requests gauge",
                f"lens_running_requests {running}",
                "# HELP lens_model_loaded 1 once the pipeline is loaded.",
                "# TYPE lens_model_loaded gauge",
                f"lens_model_loaded {int(loaded)}",
                "# HELP lens_requests_total Image generation requests answered, by HTTP status.",
                "# TYPE lens_requests_total counter",
            ]
            lines += [f'lens_requests_total{{status="{s}"}} {n}' for s, n in sorted(self.requests.items())]
            lines += [
                "# HELP lens_request_seconds Time from request to answer of successful generations.",
                "# TYPE lens_request_seconds histogram",
            ]
            total = 0
            for bound, count in zip(LATENCY_BUCKETS, self._latency):
                total += count
                lines.append(f'lens_request_seconds_bucket{{le="{bound}"}} {total}')
            total += self._latency[-1]
            lines += [
                f'lens_request_seconds_bucket{{le="+Inf"}} {total}',
                f"lens_request_seconds_sum {self._latency_sum:.6f}",
                f"lens_request_seconds_count {total}",
                "# HELP lens_images_total Images generated.",
                "# TYPE lens_images_total counter",
                f"lens_images_total {self.images_total}",
                f"# HELP lens_images_per_second Images generated per second over the last {RATE_WINDOW_S:g} s.",
                "# TYPE lens_images_per_second gauge",
                f"lens_images_per_second {rate:.6f}",
                "# HELP lens_batches_total Pipeline calls, by the number of images batched into one.",
                "# TYPE lens_batches_total counter",
            ]
            lines += [f'lens_batches_total{{images="{k}"}} {n}' for k, n in sorted(self.batches.items())]
        return "\n".join(lines) + "\n"
