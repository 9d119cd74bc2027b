"""An HTTP transport that bounds each caption request as a whole, not each socket operation.

httpx's timeouts apply per connect / read / write, so a server that trickles one byte a second never
trips them: `--timeout 3` once held a request for 20 s. Here a request gets a deadline when it starts
(its largest timeout from now) and every socket operation, body reads included, waits at most the time
left; past it the request fails with the usual `ReadTimeout`, which the caption client retries.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import httpcore2
import httpx2

LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)  # the openai SDK's own
# the deadline of the request this thread is sending or reading; requests are synchronous, one per thread
_local = threading.local()


@contextlib.contextmanager
def _until(deadline: float | None) -> Iterator[None]:
    previous = getattr(_local, "deadline", None)
    _local.deadline = deadline
    try:
        yield
    finally:
        _local.deadline = previous


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    """The socket timeout to use now: the operation's own, cut to what is left of the deadline."""
    deadline = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the request ran past its timeout")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore2.NetworkStream):
    def __init__(self, inner: httpcore2.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore2.NetworkStream:
        timeout = _left(timeout, httpcore2.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class _Backend(httpcore2.SyncBackend):
    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        timeout = _left(timeout, httpcore2.ConnectTimeout)
        return _Stream(super().connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        timeout = _left(timeout, httpcore2.ConnectTimeout)
        return _Stream(super().connect_unix_socket(path, timeout, socket_options))


class _Body(httpx2.SyncByteStream):
    """A response body read under its request's deadline (the SDK reads it after the headers)."""

    def __init__(self, inner: httpx2.SyncByteStream, deadline: float | None):
        self._inner, self._deadline = inner, deadline

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._inner)
        while True:
            with _until(self._deadline):
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        self._inner.close()


class DeadlineTransport(httpx2.HTTPTransport):
    """httpx's default transport (same pool, same TLS) with whole-request deadlines."""

    def __init__(self, limits: httpx2.Limits = LIMITS):
        # HTTPTransport does not pass a network backend to its pool, so build the pool here
        self._pool = httpcore2.ConnectionPool(
            ssl_context=httpx2.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_Backend(),
        )

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        budgets = [t for t in (request.extensions.get("timeout") or {}).values() if t is not None]
        deadline = time.monotonic() + max(budgets) if budgets else None
        with _until(deadline):
            response = super().handle_request(request)
        response.stream = _Body(response.stream, deadline)
        return response
