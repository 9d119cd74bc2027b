"""Load test of `lens serve`: N concurrent clients on loopback for a bounded time per load level.

Starts `lens serve` as a subprocess (a tiny random model unless --model is given) on 127.0.0.1 and a
free port, then, for 0.5x, 1x and 2x the queue's size in concurrent clients, each client POSTs
/v1/images/generations in a loop for --seconds. A 429 is counted and retried after the
Retry-After it carries, as the openai client does. Prints p50/p99 latency of answered requests,
images/s, 429s, errors, the worker's batch sizes (from /metrics), the server's RSS before and after,
and checks that every request sent got exactly one answer, as the server counted them too.

    python bench/serve.py                              # tiny model, queue 8, batch 4, 10 s per level
    python bench/serve.py --model models/lens-tiny --queue 16 --batch 8 --seconds 20
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

from prometheus_client.parser import text_string_to_metric_families


def start_server(model: str, queue: int, batch: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "lens", "serve", "--model", model, "--port", "0"]
    cmd += ["--max-queue", str(queue), "--max-batch", str(batch)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = re.search(r"(http://[\d.]+:\d+/)", proc.stdout.readline())[1]
    if "ready" not in proc.stdout.readline():
        raise SystemExit("the server did not become ready")
    return proc, url


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scrape(url: str) -> dict:
    with urllib.request.urlopen(f"{url}metrics") as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def client_loop(url: str, deadline: float, body: dict, results: list, lock: threading.Lock) -> None:
    host = urlparse(url)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=300)
    k = 0
    while time.monotonic() < deadline:
        k += 1
        payload = json.dumps(body | {"prompt": f"{body['prompt']} {threading.get_ident()} {k}"})
        start = time.monotonic()
        try:
            conn.request("POST", "/v1/images/generations", payload, {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            status = response.status
            images = len(json.loads(data)["data"]) if status == 200 else 0
            retry_after = float(response.headers.get("retry-after") or 1)
        except (OSError, http.client.HTTPException, ValueError):
            status, images = "conn", 0
            conn.close()
            conn = http.client.HTTPConnection(host.hostname, host.port, timeout=300)
        with lock:
            results.append((status, time.monotonic() - start, images))
        if status == 429:  # as the openai client does: wait what the server asks
            time.sleep(min(retry_after, max(0.0, deadline - time.monotonic())))
    conn.close()


def run_level(url: str, clients: int, seconds: float, body: dict) -> dict:
    before = scrape(url)
    results: list = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=client_loop, args=(url, deadline, body, results, lock))
        for _ in range(clients)
    ]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    after = scrape(url)
    ok = sorted(lat for status, lat, _ in results if status == 200)
    statuses = Counter(status for status, _, _ in results)

    def delta(name, labels=()):
        return after.get((name, labels), 0) - before.get((name, labels), 0)

    server_answered = sum(delta(name, labels) for (name, labels) in after if name == "lens_requests_total")
    batches = {
        int(dict(labels)["images"]): int(delta(name, labels))
        for (name, labels) in after
        if name == "lens_batches_total" and delta(name, labels)
    }
    return {
        "clients": clients,
        "sent": len(results),
        "ok": len(ok),
        "p50": statistics.median(ok) if ok else float("nan"),
        "p99": ok[min(len(ok) - 1, int(0.99 * len(ok)))] if ok else float("nan"),
        "images_s": sum(n for _, _, n in results) / elapsed,
        "429": statuses.get(429, 0),
        "errors": len(results) - len(ok) - statuses.get(429, 0),
        "server_answered": int(server_answered),
        "batches": batches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="pipeline folder (default: a tiny random one, 64x64, 4 steps)")
    parser.add_argument("--queue", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0, help="per load level")
    parser.add_argument("--levels", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="clients / queue")
    parser.add_argument("--steps", type=int, help="num_inference_steps per request (default: the model's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from lens.testing import tiny_random_pipeline

            model = str(Path(tmp) / "tiny")
            tiny_random_pipeline().save_pretrained(model)
        proc, url = start_server(model, args.queue, args.batch)
        try:
            body = {"prompt": "a red circle above a blue square"}
            if args.steps:
                body["num_inference_steps"] = args.steps
            run_level(url, 1, 2.0, body)  # warm-up: first calls allocate
            print(
                f"server {url} pid {proc.pid}, queue {args.queue}, batch {args.batch}, {args.seconds:g} s per level"
            )
            print(
                "| clients (x queue) | sent | 200 | p50 s | p99 s | images/s | 429 | errors | server counted | batch sizes (images: calls) | RSS MB before -> after |"
            )
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
            for level in args.levels:
                clients = max(1, round(level * args.queue))
                rss0 = rss_mb(proc.pid)
                r = run_level(url, clients, args.seconds, body)
                rss1 = rss_mb(proc.pid)
                sizes = ", ".join(f"{k}: {v}" for k, v in sorted(r["batches"].items()))
                print(
                    f"| {clients} ({level:g}x) | {r['sent']} | {r['ok']} | {r['p50']:.3f} | {r['p99']:.3f} | "
                    f"{r['images_s']:.1f} | {r['429']} | {r['errors']} | {r['server_answered']} | {sizes} | "
                    f"{rss0:.0f} -> {rss1:.0f} |",
                    flush=True,
                )
                if r["server_answered"] != r["sent"]:
                    print(f"  MISMATCH: sent {r['sent']} but the server answered {r['server_answered']}")
            if proc.poll() is not None:
                print("the server died during the run")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
