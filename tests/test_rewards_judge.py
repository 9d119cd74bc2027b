"""The rubric judge: answer parsing, and the judge against a local chat-completions server with failures."""

import base64
import hashlib
import io
import json
import re
import time
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from lens.data.caption.client import data_url
from lens.errors import LensError
from lens.rewards import resolve_reward
from lens.rewards.answers import parse_rubrics, parse_verdicts
from lens.rewards.judge import JudgeReward, JudgeSettings
from lens.rewards.rubrics import STRUCTURE
from tests.test_data_helpers import ChatServer

KEY_ENV = "LENS_TEST_JUDGE_KEY"
PROMPT = "a circle on a plain background"  # no "red": only the second rubric asks it


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"1": 1, "2": 0, "3": "yes"}', ([1, 0, 1], True)),
        ("```json\n[1, 0, true]\n```", ([1, 0, 1], True)),
        ("<think>1: no, 2: no</think>\n1: yes\n2. no\n**3.** Pass", ([1, 0, 1], True)),
        ("Q1) 1\nQ2 - 0\nq3: 1", ([1, 0, 1], True)),
        ('Here you go: {"answers": {"q1": {"answer": 1}, "q2": 0, "q3": false}}', ([1, 0, 0], True)),
        ('{"answers": [0, 1, 1]}', ([0, 1, 1], True)),
        ('{"1": 1}', ([1, 0, 0], False)),  # rubrics left open count as failed
        ('{"1": 2, "2": 1, "3": 1}', ([0, 1, 1], False)),  # 2 is no answer
        ("[1, 0]", ([0, 0, 0], False)),
        ("I'm sorry, I can't judge this image.", ([0, 0, 0], False)),
        ("", ([0, 0, 0], False)),
        (None, ([0, 0, 0], False)),
    ],
)
def test_verdicts_are_read_from_many_answer_shapes(text, expected):
    assert parse_verdicts(text, 3) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ('["Is there a circle?", "Is it red?"]', ["Is there a circle?", "Is it red?"]),
        ('```json\n{"rubrics": ["a?", "a?", "b?"]}\n```', ["a?", "b?"]),
        (
            "Rubrics:\n1. Is it red?\n2) Is it round?\n- Is it alone?",
            ["Is it red?", "Is it round?", "Is it alone?"],
        ),
        ('<think>["no"]</think>["yes?"]', ["yes?"]),
        (json.dumps([f"q{i}?" for i in range(14)]), [f"q{i}?" for i in range(10)]),
        ("[]", None),
        ("I cannot write rubrics.", None),
    ],
)
def test_rubric_lists_are_read_and_capped(text, expected):
    assert parse_rubrics(text, 10) == expected


def rubrics_for(prompt: str) -> list[str]:
    return [f"Does the image show {prompt}?", "Is the shape red?"]


class JudgeServer(ChatServer):
    """ChatServer answering both kinds of judge request, with the same scripted failures.

    A text-only request (rubric writing) is keyed "rubrics:<prompt>" and answered with rubrics_for;
    a grading request is keyed by its image and answered 1 to every question, except 0 to questions
    about red when the image is not mostly red. Records auth headers, models and requests in flight.
    """

    def __init__(self, **kw):
        self.auth: list[str | None] = []
        self.models: Counter = Counter()
        self.bodies: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self.delay = 0.0
        super().__init__(**kw)

    @staticmethod
    def image_id(body: dict) -> str:
        content = body["messages"][-1]["content"]
        return f"rubrics:{content}" if isinstance(content, str) else ChatServer.image_id(body)

    def handle(self, h, body):
        with self.lock:
            self.auth.append(h.headers.get("Authorization"))
            self.models[body["model"]] += 1
            self.bodies.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            super().handle(h, body)
        finally:
            with self.lock:
                self.in_flight -= 1

    def reply(self, body: dict, img: str) -> str:
        content = body["messages"][-1]["content"]
        if isinstance(content, str):
            return json.dumps(rubrics_for(content))
        text = next(p["text"] for p in content if p["type"] == "text")
        url = next(p["image_url"]["url"] for p in content if p["type"] == "image_url")
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
        r, g, b = np.asarray(image, np.float32).mean(axis=(0, 1))
        red = r > max(g, b) + 50
        return json.dumps(
            {n: int(red or "red" not in q) for n, q in re.findall(r"^(\d+)\. (.*)$", text, re.M)}
        )


def server_id(image: Image.Image) -> str:
    """The server's key for a grading request of this image (same encoding as the judge)."""
    return hashlib.sha1(data_url(image, 1024, "PNG").encode()).hexdigest()[:10]


def solid(rgb, mark: int = 0) -> Image.Image:
    im = Image.new("RGB", (32, 32), rgb)
    im.putpixel((0, 0), (mark, mark, mark))  # distinct images of one colour
    return im


RED, BLUE = solid((230, 20, 20)), solid((20, 20, 230))


@pytest.fixture
def server():
    s = JudgeServer()
    yield s
    s.close()


@pytest.fixture
def judge(server, tmp_path, monkeypatch):
    """JudgeReward on the local server, key in $KEY_ENV, instant backoff (sleeps recorded)."""
    monkeypatch.setenv(KEY_ENV, "sk-test-judge")
    made = []

    def make(**kw) -> JudgeReward:
        base = dict(
            model="judge-vlm", base_url=server.url, api_key_env=KEY_ENV, cache_dir=str(tmp_path / "judge")
        )
        base |= dict(timeout=2.0, max_retries=4, backoff_base=0.01, backoff_cap=0.02, concurrency=1)
        sleeps: list[float] = []
        reward = JudgeReward(JudgeSettings(**(base | kw)), sleep=sleeps.append)
        reward.sleeps = sleeps
        made.append(reward)
        return reward

    yield make
    for r in made:
        r.close()


def _ledger(tmp_path) -> list[dict]:
    return [
        json.loads(line)
        for f in (tmp_path / "judge" / "ledger").glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]


def test_scores_are_the_share_of_rubrics_passed_and_a_restart_pays_nothing(judge, server, tmp_path):
    reward = judge(concurrency=4)
    assert reward([RED, BLUE, RED], [PROMPT] * 3, [None] * 3) == [1.0, pytest.approx(2 / 3), 1.0]
    # one rubric request for the prompt, one grading request per distinct image (RED is judged once)
    assert server.served == Counter({f"rubrics:{PROMPT}": 1, server_id(RED): 1, server_id(BLUE): 1})
    assert len(server.log) == 3 and reward.stats == Counter(rubric_requests=1, requests=2, ok=2)
    grading = next(b for b in server.bodies if isinstance(b["messages"][-1]["content"], list))
    text, image = grading["messages"][-1]["content"]
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    assert text["text"].endswith(f"1. Does the image show {PROMPT}?\n2. Is the shape red?\n3. {STRUCTURE}")
    assert set(server.auth) == {"Bearer sk-test-judge"}  # the key from the variable named by api_key_env
    (cached,) = (tmp_path / "judge" / "rubrics").glob("*.json")
    assert json.loads(cached.read_text())["rubrics"] == rubrics_for(PROMPT)
    records = _ledger(tmp_path)
    assert sorted(r["score"] for r in records) == [pytest.approx(2 / 3), 1.0]
    assert {tuple(r["verdicts"]) for r in records} == {(1, 1, 1), (1, 0, 1)}

    requests = len(server.log)
    again = judge(concurrency=4)  # a restart: the same cache folder, a new process's reward
    assert again([BLUE, RED], [PROMPT] * 2, [None] * 2) == [pytest.approx(2 / 3), 1.0]
    assert len(server.log) == requests and again.stats["from_ledger"] == 2 and again.stats["requests"] == 0

    other = judge(rubric_model="writer")  # another rubric model: its own rubrics, then new grading keys
    other([RED], [PROMPT], [None])
    assert server.models["writer"] == 1 and len(list((tmp_path / "judge" / "rubrics").glob("*.json"))) == 2


def test_transport_failures_are_retried(judge, server, tmp_path):
    server.slow_s = 1.0
    # in arrival order (concurrency 1): the rubric request, then RED, then BLUE
    server.script.extend(["429", "500", "ok", "slow", "503", "malformed", "ok"])
    reward = judge(timeout=0.3)
    assert reward([RED, BLUE], [PROMPT] * 2, [None] * 2) == [1.0, pytest.approx(2 / 3)]
    assert all(server.behaviours[b] == 1 for b in ("429", "500", "slow", "503", "malformed"))
    assert reward.stats["rubric_requests"] == 3 and reward.stats["requests"] == 5
    # the 429's Retry-After (0.05 s) is honoured, the others back off 0.005 to 0.02 s
    assert reward.sleeps[0] == pytest.approx(0.05, rel=0.11) and all(s <= 0.02 for s in reward.sleeps[1:])
    assert [r["attempts"] for r in _ledger(tmp_path)] == [4, 1]


def test_unreadable_answers_are_asked_again_then_count_as_failed(judge, server, tmp_path):
    server.always[server_id(BLUE)] = "refusal"
    server.script.extend(["ok", "short"])  # the rubrics, then one unreadable answer for RED first
    reward = judge(validation_retries=2)
    assert reward([RED, BLUE], [PROMPT] * 2, [None] * 2) == [1.0, 0.0]
    red, blue = _ledger(tmp_path)
    assert red["status"] == "ok" and red["attempts"] == 2 and red["reason"] is None
    assert blue["status"] == "flagged" and blue["attempts"] == 3 and "unreadable answer" in blue["reason"]
    assert reward.stats["flagged"] == 1
    requests = len(server.log)
    assert judge()([BLUE], [PROMPT], [None]) == [0.0] and len(server.log) == requests  # paid once


def test_an_image_never_answered_raises_after_the_rest_is_recorded(judge, server, tmp_path):
    server.always[server_id(BLUE)] = "500"
    with pytest.raises(LensError, match=r"did not answer 1 of 2 images .*gave up after 3 failures"):
        judge(max_retries=2, concurrency=2)([RED, BLUE], [PROMPT] * 2, [None] * 2)
    assert [r["score"] for r in _ledger(tmp_path)] == [1.0]
    server.always.clear()
    before = Counter(server.served)
    assert judge()([RED, BLUE], [PROMPT] * 2, [None] * 2) == [1.0, pytest.approx(2 / 3)]
    assert server.served - before == Counter({server_id(BLUE): 1})  # only the unanswered one


def test_concurrency_is_bounded(judge, server):
    server.delay = 0.1
    images = [solid((230, 20, 20), mark) for mark in range(6)]
    assert judge(concurrency=2)(images, [PROMPT] * 6, [None] * 6) == [1.0] * 6
    assert server.max_in_flight == 2


def test_unreadable_rubrics_fall_back_to_one_question_and_are_not_cached(judge, server, tmp_path):
    server.always[f"rubrics:{PROMPT}"] = "refusal"
    with pytest.warns(UserWarning, match="no readable rubrics"):
        assert judge(validation_retries=1)([BLUE], [PROMPT], [None]) == [1.0]  # no red question asked
    assert server.behaviours["refusal"] == 2 and not list((tmp_path / "judge" / "rubrics").glob("*.json"))
    text = server.bodies[-1]["messages"][-1]["content"][0]["text"]
    assert text.endswith(f"1. Does the image faithfully show: {PROMPT}?\n2. {STRUCTURE}")


def test_a_refused_key_is_one_clear_error(judge, server):
    server.script.append("401")
    with pytest.raises(LensError, match="the judge API refused the request .*LENS_JUDGE_API_KEY_ENV"):
        judge()([RED], [PROMPT], [None])


def test_judge_spec_reads_the_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LENS_JUDGE_MODEL", "env-vlm")
    monkeypatch.setenv("LENS_JUDGE_BASE_URL", server.url)
    monkeypatch.setenv("LENS_JUDGE_API_KEY_ENV", KEY_ENV)
    monkeypatch.setenv("LENS_JUDGE_CACHE", str(tmp_path / "env"))
    monkeypatch.setenv(KEY_ENV, "sk-from-env")
    reward = resolve_reward("judge", concurrency=2)
    try:
        assert isinstance(reward, JudgeReward) and reward.s.model == "env-vlm" and reward.s.concurrency == 2
        assert reward([RED], [PROMPT], [None]) == [1.0]
    finally:
        reward.close()
    assert set(server.auth) == {"Bearer sk-from-env"} and server.models == Counter({"env-vlm": 2})
    assert (tmp_path / "env" / "ledger").is_dir()
    with pytest.raises(LensError, match="unknown judge setting"):
        resolve_reward("judge", modle="x")
    monkeypatch.delenv("LENS_JUDGE_MODEL")
    with pytest.raises(LensError, match=r"needs a model: set \$LENS_JUDGE_MODEL"):
        resolve_reward("judge")
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(LensError, match=rf"set \${KEY_ENV}"):
        resolve_reward("judge", model="m", base_url="https://api.example.com/v1")


def test_a_damaged_rubric_file_is_asked_again(judge, server, tmp_path):
    judge()([RED], [PROMPT], [None])
    (cached,) = (tmp_path / "judge" / "rubrics").glob("*.json")
    cached.write_text('{"prompt": "a circ')  # a torn write
    assert judge()([BLUE], [PROMPT], [None]) == [pytest.approx(2 / 3)]
    assert server.served[f"rubrics:{PROMPT}"] == 2 and json.loads(cached.read_text())[
        "rubrics"
    ] == rubrics_for(PROMPT)
