import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from lens.cli import main
from lens.data.caption.client import CaptionSettings, retry_after
from lens.data.caption.run import make_openai_client, run_caption
from lens.data.report import build_report
from lens.data.sample import dump_meta, read_meta
from lens.data.shards import ShardWriter, iter_shard, list_shards
from lens.errors import LensError
from tests.test_data_helpers import ChatServer, TrickleServer, grey_noise, image_ids, jpeg

N = 10


@pytest.fixture
def shards(tmp_path):
    d = tmp_path / "clean"
    for s in range(2):
        with ShardWriter(d / f"00000{s}.tar") as w:
            for i in range(N // 2):
                im = grey_noise(100 * s + i, (48, 64))
                w.write(
                    {
                        "__key__": f"00000{s}_{i:05d}",
                        "jpg": jpeg(im),
                        "json": dump_meta({"width": 64, "height": 48}),
                    }
                )
    return d


@pytest.fixture
def server():
    s = ChatServer()
    yield s
    s.close()


def settings(**kw):
    base = dict(
        model="test-vlm", backoff_base=0.01, backoff_cap=0.05, timeout=0.4, price_in=2.0, price_out=8.0
    )
    return CaptionSettings(**(base | kw))


def caption(shards, out, server, concurrency=4, **kw):
    client = make_openai_client(server.url, "LENS_TEST_NO_KEY", None, 5.0)
    run_kw = {k: kw.pop(k) for k in ("limit", "keep_flagged", "shard") if k in kw}
    return run_caption([str(shards)], str(out), settings(**kw), client, concurrency=concurrency, **run_kw)


def _ledger(out):
    return [
        json.loads(line)
        for f in sorted((out / "ledger").glob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]


def test_every_failure_kind_is_retried_and_each_image_paid_once(shards, server, tmp_path):
    script = ["429", "500", "503", "slow", "malformed", "empty", "refusal", "length", "short"]
    server.script.extend(script)
    out = tmp_path / "cap"
    summary = caption(shards, out, server, validation_retries=4)  # 4 invalid answers never flag one image
    ids = image_ids(shards)
    assert server.served == Counter({i: 1 for i in ids})  # each image captioned exactly once
    assert all(server.behaviours[b] == 1 for b in script)
    assert summary["ok"] == N and summary["shards_written"] == 2
    assert summary["requests"] == N + len(script)
    # tokens: every 200 answer with usage is paid, invalid ones included (the slow one timed out)
    assert summary["prompt_tokens"] == 1000 * (N + 4) and summary["completion_tokens"] == 80 * (N + 4)
    samples = [s for sh in list_shards(out) for s in iter_shard(sh)]
    assert len(samples) == N
    for s in samples:
        text = s["caption.txt"].decode()
        assert text.startswith("A photo ") and text.endswith(".") and len(text.split()) == 60
        assert read_meta(s)["captions"]["dense"]["status"] == "ok"
        assert read_meta(s)["width"] == 64  # upstream metadata kept
    report = build_report(out)
    caps = report["steps"][-1]["captions"]
    assert caps["status"] == {"ok": N} and caps["words_mean"] == 60.0
    assert caps["words_hist"] == {"50-74": N}
    assert caps["cost"] == pytest.approx((1000 * (N + 4) * 2.0 + 80 * (N + 4) * 8.0) / 1e6)
    assert (out / "caption_lengths.png").is_file() and "Words: mean 60.0" in (out / "report.md").read_text()


def test_invalid_answers_are_flagged_after_retries_and_not_requested_again(shards, server, tmp_path):
    bad = image_ids(shards)[3]
    server.always[bad] = "refusal"
    out = tmp_path / "cap"
    summary = caption(shards, out, server, validation_retries=2)
    assert summary["flagged"] == 1 and summary["ok"] == N - 1
    flagged = [r for r in _ledger(out) if r["status"] == "flagged"]
    assert len(flagged) == 1 and flagged[0]["reason"] == "refusal" and flagged[0]["attempts"] == 3
    assert sum(len(list(iter_shard(sh))) for sh in list_shards(out)) == N - 1  # flagged left out
    before = server.behaviours["refusal"]
    caption(shards, tmp_path / "cap", server, keep_flagged=True)  # restart: nothing new is requested
    assert server.behaviours["refusal"] == before and sum(server.served.values()) == N - 1


def test_retry_after_is_respected(shards, server, tmp_path):
    server.retry_after = "0.5"
    server.script.append("429")
    caption(shards, tmp_path / "cap", server, concurrency=1, limit=1)
    (t0, img0, what0), (t1, img1, _) = server.log[:2]
    assert what0 == "429" and img1 == img0
    assert t1 - t0 >= 0.5  # the backoff alone (base 0.01 s) would have retried at once


def test_retry_after_header_forms():
    class E:
        def __init__(self, headers):
            self.response = type("R", (), {"headers": headers})()

    assert retry_after(E({"retry-after-ms": "250"})) == 0.25
    assert retry_after(E({"retry-after": "3"})) == 3.0
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < retry_after(E({"retry-after": future})) <= 31
    assert retry_after(E({})) is None


def test_restart_after_limit_and_after_a_fatal_error(shards, server, tmp_path):
    out = tmp_path / "cap"
    s1 = caption(shards, out, server, limit=3)
    assert s1["ok"] == 3 and s1["shards_written"] == 0  # no shard is complete yet
    server.script.extend(["ok", "ok", "401"])  # the third request of the next run: a revoked key
    with pytest.raises(LensError, match="API key"):
        caption(shards, out, server, concurrency=1)
    assert len(_ledger(out)) == 5
    s3 = caption(shards, out, server)
    assert s3["ok"] == N - 5 and s3["shards_written"] == 2
    assert server.served == Counter({i: 1 for i in image_ids(shards)})  # none twice, none lost
    assert len({r["key"] for r in _ledger(out)}) == len(_ledger(out)) == N


def test_hard_kill_midway_loses_nothing_and_recaptions_nothing_recorded(shards, tmp_path):
    server = ChatServer()
    original = server.handle

    def slow_handle(h, body):
        time.sleep(0.15)
        original(h, body)

    server.handle = slow_handle
    out = tmp_path / "cap"
    args = ["data", "caption", str(shards), "--out", str(out), "--model", "m", "--base-url", server.url]
    args += ["--concurrency", "2", "--api-key-env", "LENS_TEST_NO_KEY"]
    code = f"import sys; from lens.cli import main; sys.exit(main({args!r}))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (out / "ledger").is_dir() and len(_ledger(out)) >= 3:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    recorded = {r["key"] for r in _ledger(out)}
    assert 3 <= len(recorded) < N
    served_before = Counter(server.served)
    client = make_openai_client(server.url, "LENS_TEST_NO_KEY", None, 5.0)
    run_caption([str(shards)], str(out), settings(), client, concurrency=2)
    ledger = _ledger(out)
    assert (
        len({r["key"] for r in ledger}) == N and sum(len(list(iter_shard(s))) for s in list_shards(out)) == N
    )
    # at most the requests in flight at the kill are paid twice
    assert sum(server.served.values()) <= N + 2
    assert sum(served_before.values()) >= len(recorded)
    server.close()


@pytest.mark.parametrize("part", ["headers", "body"])
def test_timeout_bounds_a_whole_request_from_a_trickling_server(shards, tmp_path, part):
    # one byte a second never trips a per-read timeout; --timeout must still cut the request
    server = TrickleServer(part)
    args = ["data", "caption", str(shards), "--out", str(tmp_path / "cap"), "--model", "m"]
    args += ["--base-url", server.url, "--api-key-env", "LENS_TEST_NO_KEY", "--timeout", "2"]
    args += ["--max-retries", "0", "--concurrency", "1", "--limit", "1"]
    start = time.monotonic()
    try:
        assert main(args) == 0
    finally:
        server.close()
    assert server.sent >= 1 and time.monotonic() - start < 4.5
    assert not _ledger(tmp_path / "cap")  # timed out: not recorded, captioned by the next run


def test_missing_key_and_azure_settings_are_explained(monkeypatch):
    monkeypatch.delenv("LENS_TEST_NO_KEY", raising=False)
    with pytest.raises(LensError, match=r"\$LENS_TEST_NO_KEY"):
        make_openai_client(None, "LENS_TEST_NO_KEY", None, 5.0)
    monkeypatch.setenv("LENS_TEST_NO_KEY", "k")
    with pytest.raises(LensError, match="--base-url"):
        make_openai_client(None, "LENS_TEST_NO_KEY", "2024-10-21", 5.0)
    import openai

    az = make_openai_client("https://x.openai.azure.com", "LENS_TEST_NO_KEY", "2024-10-21", 5.0)
    assert isinstance(az, openai.AzureOpenAI)


def test_brief_prompt_writes_brief_txt(shards, server, tmp_path):
    server.caption_words = 8
    out = tmp_path / "brief"
    caption(shards, out, server, prompt="brief")
    s = next(iter_shard(list_shards(out)[0]))
    assert "brief.txt" in s and "caption.txt" not in s
    assert read_meta(s)["captions"]["brief"]["model"] == "test-vlm"
