"""What a generated image becomes: PNG bytes that say how to make it again, and the expiring store
behind `response_format: "url"`."""

from __future__ import annotations

import io
import secrets
import threading
import time
from collections import OrderedDict

from PIL.PngImagePlugin import PngInfo


def png_bytes(image, params: dict) -> bytes:
    """The image as PNG with one text chunk per parameter (prompt, seed, steps, guidance, size, ...)
    and a `parameters` chunk holding them all, so a downloaded file carries its own recipe."""
    info = PngInfo()
    for key, value in params.items():
        info.add_text(key, str(value))
    info.add_text("parameters", " ".join(f"{k}={v!r}" for k, v in params.items()))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


class UrlStore:
    """PNGs by unguessable token for `ttl` seconds; at most `capacity` held, oldest dropped first, so
    memory stays bounded however many url responses are asked for."""

    def __init__(self, ttl: float = 3600.0, capacity: int = 512, clock=time.monotonic):
        self.ttl, self.capacity, self._clock = ttl, capacity, clock
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, data: bytes) -> str:
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._expire()
            self._items[token] = (self._clock() + self.ttl, data)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return token

    def get(self, token: str) -> bytes | None:
        with self._lock:
            self._expire()
            item = self._items.get(token)
        return None if item is None else item[1]

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._items)

    def _expire(self) -> None:
        now = self._clock()
        # insertion order is expiry order (one ttl for all), so stop at the first live one
        while self._items and next(iter(self._items.values()))[0] <= now:
            self._items.popitem(last=False)
