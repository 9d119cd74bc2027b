"""Shared helpers for the data tests (no tests here): real photos, broken files, tiny models, a fake API.

Photos are scikit-image's bundled images; broken files are made by hand; models are tiny random
transformers models saved to tmp_path; the chat server speaks POST /v1/chat/completions on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import threading
import time
import zlib
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

from lens.data.filters.calibrate import photo

# photos >= 384^2 (kept by the area stage) and two smaller ones (dropped by it)
BIG_PHOTOS = ("astronaut", "coffee", "rocket", "camera", "immunohistochemistry", "gravel")
SMALL_PHOTOS = ("chelsea", "coins")


def jpeg(image: Image.Image, quality: int = 92, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


def png(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", **kw)
    return buf.getvalue()


def bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A PNG whose header claims width x height (1.6 Gpx) but carries almost no data."""
    raw = png(Image.new("L", (1, 1)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return raw[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + raw[33:]


def broken_files() -> dict[str, bytes]:
    """name -> bytes of files ingest must count, not crash on."""
    good = jpeg(photo("astronaut"))
    return {
        "truncated.jpg": good[: len(good) // 3],
        "notes.pdf": b"%PDF-1.4 this is not an image",
        "empty.png": b"",
        "bomb.png": bomb_png(),
    }


def make_folder(root: Path, photos=BIG_PHOTOS + SMALL_PHOTOS, broken: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in photos:
        (root / f"{name}.jpg").write_bytes(jpeg(photo(name)))
    (root / "astronaut.txt").write_text("an astronaut in a white suit\n")
    if broken:
        for name, data in broken_files().items():
            (root / name).write_bytes(data)
    return root


# ---------------------------------------------------------------- tiny transformers models


def tiny_classifier(path: Path, labels=("normal", "nsfw"), bias=None) -> str:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    cfg = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=37, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={v: k for k, v in enumerate(labels)},
    )  # fmt: skip
    model = ViTForImageClassification(cfg)
    if bias is not None:  # make the decision certain: zero weights, chosen bias
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    model.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return str(path)


def tiny_clip(path: Path, kind: str = "clip") -> str:
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    torch.manual_seed(0)
    text = dict(
        hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, vocab_size=99
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=4,
    )
    if kind == "clip":
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        proc = SiglipImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return str(path)


# ---------------------------------------------------------------- a chat-completions server


def words(n: int, tag: str) -> str:
    body = " ".join(f"w{i}" for i in range(n - 4))
    return f"A photo {tag} shows {body}."


class LocalServer:
    """An HTTP server on 127.0.0.1 in a daemon thread; `url` is its OpenAI-style /v1 base."""

    def start(self, handler) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class ChatServer(LocalServer):
    """POST /v1/chat/completions with scripted failures.

    `script`: behaviours for the next requests, in arrival order ('429', '500', '503', 'slow',
    'malformed', 'empty', 'refusal', 'length', 'short', '401'); then 'ok'. `always[image_id]` forces a
    behaviour for one image. `served[image_id]` counts valid captions served (what a user pays for).
    """

    def __init__(self, script=(), retry_after: str = "0.05", slow_s: float = 1.0, caption_words: int = 60):
        self.script, self.always = deque(script), {}
        self.retry_after, self.slow_s, self.caption_words = retry_after, slow_s, caption_words
        self.served: Counter = Counter()
        self.behaviours: Counter = Counter()
        self.log: list[tuple[float, str, str]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.handle(self, body)

        self.start(Handler)

    @staticmethod
    def image_id(body: dict) -> str:
        url = next(p["image_url"]["url"] for p in body["messages"][-1]["content"] if p["type"] == "image_url")
        return hashlib.sha1(url.encode()).hexdigest()[:10]

    def handle(self, h, body):
        if "max_tokens" in body:  # as OpenAI's reasoning models answer the older parameter
            error = {"message": "Unsupported parameter: 'max_tokens'", "type": "invalid_request_error"}
            return self._send(h, 400, {"error": {**error, "code": "unsupported_parameter"}})
        img = self.image_id(body)
        with self.lock:
            what = self.always.get(img) or (self.script.popleft() if self.script else "ok")
            self.behaviours[what] += 1
            self.log.append((time.monotonic(), img, what))
        if what in ("429", "500", "503", "401"):
            headers = {"Retry-After": self.retry_after} if what == "429" else {}
            return self._send(
                h, int(what), {"error": {"message": f"scripted {what}", "type": "x", "code": None}}, headers
            )
        if what == "malformed":
            return self._send(h, 200, raw=b'{"id": "x", "choices": [ {')
        if what == "slow":
            time.sleep(self.slow_s)
        content, finish = {
            "empty": ("", "stop"),
            "refusal": ("I'm sorry, but I can't help with describing this image.", "stop"),
            "length": (words(self.caption_words, img)[:-1], "length"),
            "short": ("A cat.", "stop"),
        }.get(what, (self.reply(body, img), "stop"))
        if what in ("ok",):
            with self.lock:
                self.served[img] += 1
        payload = {
            "id": f"chatcmpl-{img}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}
            ],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 80, "total_tokens": 1080},
        }
        self._send(h, 200, payload)

    def reply(self, body: dict, img: str) -> str:
        """The answer to a request that goes well: a caption of `caption_words` words."""
        return words(self.caption_words, img)

    @staticmethod
    def _send(h, status, payload=None, headers=None, raw=None):
        data = raw if raw is not None else json.dumps(payload).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout)


def _completion_response() -> tuple[bytes, bytes]:
    """(status line + headers, body) of a valid chat completion."""
    message = {"role": "assistant", "content": words(60, "t")}
    body = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [
        {"index": 0, "message": message, "finish_reason": "stop"}
    ]}).encode()  # fmt: skip
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode(), body


class TrickleServer(LocalServer):
    """Answers every POST with a valid chat completion sent one byte per `interval` seconds.

    `part="headers"` trickles from the status line on, `part="body"` sends the headers at once; after
    `give_up_s` the server hangs up, so a client with no whole-request bound still ends, only late.
    """

    def __init__(self, part: str = "body", interval: float = 1.0, give_up_s: float = 10.0):
        self.sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.close_connection = True
                head, body = _completion_response()
                fast, slow = (b"", head + body) if part == "headers" else (head, body)
                start = time.monotonic()
                try:
                    self.wfile.write(fast)
                    for i in range(len(slow)):
                        if time.monotonic() - start > give_up_s:
                            return
                        self.wfile.write(slow[i : i + 1])
                        self.wfile.flush()
                        server.sent += 1
                        time.sleep(interval)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up: what it should do

        self.start(Handler)


def image_ids(shard_dir: Path, max_side: int = 1536) -> list[str]:
    """The server-side ids of every image in a folder of shards (same encoding as the client)."""
    from lens.data.caption.client import image_url
    from lens.data.sample import image_ext
    from lens.data.shards import iter_shard, list_shards

    ids = []
    for s in list_shards(shard_dir):
        for sample in iter_shard(s):
            url = image_url(sample[image_ext(sample)], max_side)
            ids.append(hashlib.sha1(url.encode()).hexdigest()[:10])
    return ids


def grey_noise(seed: int, size=(400, 400)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8))
