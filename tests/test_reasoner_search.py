"""`lens reasoner search`: the system-prompt search loop, end to end against a local chat server.

One server plays both roles. The prompt editor answers scripted proposals (or fails); the rewriter is
a fake LLM that follows the rules its system prompt names: a request's colours, counts and positions
come out right only when the system prompt mentions them (else the colour is another one, the count
one and the relation reversed), and "brief" loses the whole request.
The generator draws what each rewrite literally asks for in the shapes world, so a better system
prompt measurably scores higher on Nano-Eval.
"""

from __future__ import annotations

import functools
import json
from collections import deque

import pytest

from lens.cli import main
from lens.errors import LensError
from lens.eval import nano_prompts
from lens.eval.reference import caption_generator
from lens.reasoner.api import ApiSettings
from lens.reasoner.editor import EDITOR_SYSTEM, PromptEditor, extract_prompt
from lens.reasoner.scoring import format_summary, score_system_prompt
from lens.reasoner.search import BEST, STATE, search, split_prompts
from lens.world.geneval import parse_prompt, phrase
from lens.world.vocab import COLORS as COLOR_NAMES
from tests.reasoner_support import KEY_ENV, ReasonerServer, api_reasoner  # noqa: F401

INITIAL = "Rewrite the request as a caption of flat shapes."
COLOURS = "Rewrite the request as a caption of flat shapes. State every colour and every count."
BRIEF = "Be brief: a few words."
COLORS = list(COLOR_NAMES)
REVERSED = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
ALL = "Rewrite the request as a caption of flat shapes. State every colour, count and position."


def tagged(text: str) -> str:
    return f"Here you are.\n<system_prompt>\n{text}\n</system_prompt>"


def fake_rewrite(system: str, prompt: str) -> str:
    """What the fake LLM writes for `prompt` under `system` (see the module docstring)."""
    rules = system.lower()
    if "brief" in rules:
        return "An image."
    include = [dict(r) for r in parse_prompt(prompt)["include"]]
    for r in include:
        if "colour" not in rules and "color" in r:
            r["color"] = COLORS[(COLORS.index(r["color"]) + 1) % len(COLORS)]
        if "count" not in rules:
            r["count"] = 1
        if "position" not in rules and "position" in r:
            r["position"] = [REVERSED[r["position"][0]], r["position"][1]]
    return f"{phrase({'include': include})}, drawn flat. The background is plain and evenly lit."


class SearchServer(ReasonerServer):
    """The editor answers `proposals` in turn (an answer's text, or '500' / 'malformed' for a failed
    request); any other request is a rewrite, answered by `fake_rewrite`."""

    def __init__(self, proposals=()):
        self.proposals = deque(proposals)
        super().__init__()

    @staticmethod
    def editing(body: dict) -> bool:
        return body["messages"][0]["content"] == EDITOR_SYSTEM

    def handle(self, h, body):
        if self.editing(body):
            with self.lock:
                answer = self.proposals.popleft() if self.proposals else "no proposal left"
                if answer in ("500", "malformed"):
                    self.script.appendleft(answer)  # ChatServer's scripted failure for this request
                body["answer"] = answer
        return super().handle(h, body)

    def reply(self, body: dict, img: str) -> str:
        if self.editing(body):
            return body["answer"]
        return fake_rewrite(body["messages"][0]["content"], body["messages"][-1]["content"])

    def editor_bodies(self) -> list[dict]:
        return [b for b in self.bodies if self.editing(b)]

    def rewrites(self, system: str) -> int:
        return sum(b["messages"][0]["content"] == system for b in self.bodies)


@pytest.fixture
def server():
    s = SearchServer()
    yield s
    s.close()


SEARCH, HELD = split_prompts(nano_prompts(), held_out=0.5, per_tag=2)


@pytest.fixture
def run(server, api_reasoner):  # noqa: F811
    """search() on the local server: the editor with one retry, the world generator, 12 + 12 prompts."""
    editor = PromptEditor(
        ApiSettings("editor-model", server.url, KEY_ENV, timeout=5.0, max_retries=1), sleep=lambda s: None
    )
    scorer = functools.partial(score_system_prompt, reasoner=api_reasoner(), generate=caption_generator())
    rows: list[str] = []

    def go(out, iterations, score=None, fingerprint=None):
        rows.clear()
        return search(
            out, INITIAL, score or functools.partial(scorer, prompts=SEARCH), editor, iterations,
            held_out=functools.partial(scorer, prompts=HELD), fingerprint=fingerprint, report=rows.append,
        )  # fmt: skip

    go.rows, go.scorer = rows, scorer
    return go


def test_split_is_stratified_disjoint_and_seeded():
    prompts = nano_prompts()
    search_set, held = split_prompts(prompts, held_out=0.25)
    assert len(search_set) + len(held) == len(prompts)
    assert not {p["prompt"] for p in search_set} & {p["prompt"] for p in held}
    assert {p["tag"] for p in held} == {p["tag"] for p in prompts}  # every tag held out, even 8 prompts
    assert split_prompts(prompts, 0.25) == (search_set, held) != split_prompts(prompts, 0.25, seed=1)
    assert [len(x) for x in split_prompts(prompts, 0.5, per_tag=2)] == [12, 12]
    with pytest.raises(LensError, match="held_out"):
        split_prompts(prompts, 1.0)


def test_the_loop_keeps_the_better_prompt_rejects_the_worse_and_survives_the_editor(server, run, tmp_path):
    server.proposals.extend(
        [
            tagged(COLOURS),
            tagged(BRIEF),
            "500",
            "500",
            "malformed",
            "malformed",
            "Sure! Try this.",
            tagged(ALL),
        ]
    )
    state = run(tmp_path, 6)
    outcomes = [e["outcome"] for e in state["iterations"]]
    assert outcomes[:3] == ["initial", "kept", "rejected"]
    assert outcomes[3].startswith("editor failed: gave up after 2 failures") and "500" in outcomes[3]
    assert outcomes[4].startswith("editor failed: gave up after 2 failures")
    assert outcomes[5] == "editor answer had no <system_prompt> block" and outcomes[6] == "kept"
    score = {c["system_prompt"]: c["score"] for c in state["candidates"].values()}
    assert score[BRIEF] == 0.0 < score[INITIAL] < score[COLOURS] < score[ALL] == 1.0
    assert [e["best"] for e in state["iterations"]][3:6] == [state["iterations"][1]["candidate"]] * 3
    assert (tmp_path / BEST).read_text().strip() == ALL
    on_disk = json.loads((tmp_path / STATE).read_text())
    assert on_disk["best"] == state["best"] and len(on_disk["candidates"]) == 4
    held = on_disk["held_out"]
    assert held[state["iterations"][0]["candidate"]]["score"] < held[state["best"]]["score"] == 1.0
    # every rewrite asked once per candidate and prompt; held-out prompts only for the initial and best
    assert server.rewrites(INITIAL) == server.rewrites(ALL) == len(SEARCH) + len(HELD)
    assert server.rewrites(COLOURS) == server.rewrites(BRIEF) == len(SEARCH)
    # the table: header, one row per iteration, the held-out line
    assert len(run.rows) == 2 + 7 + 1 and run.rows[-1].startswith("held-out: initial (#0)")
    assert "| 2 | #2 | 0.000 |" in run.rows[4] and run.rows[5].startswith("| 3 | - |")


def test_the_editor_reads_the_prompt_its_score_and_the_failures(server, run, tmp_path):
    server.proposals.extend([tagged(COLOURS), tagged(ALL)])
    state = run(tmp_path, 2)
    colours = next(c for c in state["candidates"].values() if c["system_prompt"] == COLOURS)
    second = server.editor_bodies()[1]["messages"][1]["content"]
    assert (
        f"<system_prompt>\n{COLOURS}\n</system_prompt>" in second
        and f"Score: {colours['score']:.3f}" in second
    )
    assert colours["summary"]["tags"]["position"]["rules"] == {
        "position": colours["summary"]["tags"]["position"]["failed"]
    }
    assert "No failures in: single_object, two_object, counting, colors, color_attr." in second
    example = colours["summary"]["examples"]["position"][0]
    assert f'-> "{fake_rewrite(COLOURS, example["prompt"])}" -> expected' in second
    assert colours["summary_text"] == format_summary(colours) and colours["summary_text"] in second


def test_a_restart_scores_nothing_twice(server, run, tmp_path):
    server.proposals.extend([tagged(COLOURS), tagged(BRIEF)])
    run(tmp_path, 2)
    before = len(server.bodies)
    state = run(tmp_path, 2)  # finished: only the table again
    assert len(server.bodies) == before and len(run.rows) == 2 + 3 + 1
    server.proposals.extend([tagged(INITIAL), tagged(ALL)])  # a seen prompt, then a new one
    state = run(tmp_path, 4)
    assert [e["outcome"] for e in state["iterations"][3:]] == ["rejected (seen before, #0)", "kept"]
    assert server.rewrites(INITIAL) == server.rewrites(COLOURS) == len(SEARCH) + len(HELD)
    assert server.rewrites(BRIEF) == len(SEARCH) and server.rewrites(ALL) == len(SEARCH) + len(HELD)
    with pytest.raises(LensError, match="other settings \\(n_samples differ\\)"):
        run(tmp_path, 4, fingerprint={"n_samples": 4})


def test_a_proposal_made_before_a_crash_is_scored_after_the_restart(server, run, tmp_path):
    server.proposals.extend([tagged(COLOURS)])
    scored: list[str] = []

    def crashing(text):
        if text == COLOURS:
            raise KeyboardInterrupt  # killed while scoring the proposal
        scored.append(text)
        return run.scorer(text, prompts=SEARCH)

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, 1, score=crashing)
    assert json.loads((tmp_path / STATE).read_text())["pending"]["system_prompt"] == COLOURS
    state = run(tmp_path, 1)
    assert len(server.editor_bodies()) == 1  # the editor was not asked again
    assert [e["outcome"] for e in state["iterations"]] == ["initial", "kept"] and "pending" not in state
    assert scored == [INITIAL]


def test_the_world_generator_draws_what_a_caption_literally_asks_for():
    from lens.eval.nano_eval import sample_results
    from lens.world.geneval import find_prompt

    assert (
        find_prompt("On grey. Exactly two red circles, both large.")["prompt"] == "a photo of two red circles"
    )
    assert find_prompt("a large red circle") is None  # outside the prompt grammar: nothing to draw
    prompts = SEARCH[::2]
    texts = [f"Flat shapes: {md['prompt']}, centred." for md in prompts]
    faithful = sample_results(caption_generator(), prompts, texts, n_samples=1)
    assert all(r["correct"] for r in faithful)
    blank = sample_results(caption_generator(), prompts, ["A calm, empty scene."] * len(prompts), n_samples=1)
    assert not any(r["correct"] for r in blank) and all(r["failed"][0].startswith("count") for r in blank)


def test_extract_prompt():
    assert extract_prompt(tagged("  Be exact.  ")) == "Be exact."
    assert (
        extract_prompt("<think>x <system_prompt>no</system_prompt></think><system_prompt>A</system_prompt>")
        == "A"
    )
    assert extract_prompt("<system_prompt>cut off by the length limit") is None
    assert extract_prompt("<system_prompt> </system_prompt>") is extract_prompt("") is None


def test_cli_search_with_the_world_generator(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-search")
    start = tmp_path / "start.txt"
    start.write_text(INITIAL + "\n")
    server.proposals.extend([tagged(ALL)])
    api = ["--api-base", server.url, "--api-model", "chat-model", "--api-key-env", KEY_ENV]
    args = ["reasoner", "search", "--out", str(tmp_path / "s"), "--generator", "world", "--iterations", "1",
            "--per-tag", "1", "--system-prompt-file", str(start), *api]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "6 search prompts, 6 held out; generator: world 64x64" in out
    assert "| 1 | #1 | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 | kept |" in out
    assert "held-out: initial (#0)" in out and f"best system prompt: {tmp_path / 's' / BEST} (#1" in out
    assert (tmp_path / "s" / BEST).read_text().strip() == ALL
    assert set(server.auth) == {"Bearer sk-search"}
    assert server.editor_bodies()[0]["model"] == "chat-model"  # the editor defaults to the reasoner's API


def test_cli_search_with_a_pipeline(server, tmp_path, capsys, monkeypatch):
    """The default generator: a (tiny, random) pipeline draws the rewrites."""
    monkeypatch.setenv(KEY_ENV, "sk-search")
    assert main(["create-tiny", str(tmp_path / "tiny")]) == 0
    server.proposals.extend([tagged(ALL)])
    api = ["--api-base", server.url, "--api-model", "chat-model", "--api-key-env", KEY_ENV]
    args = ["reasoner", "search", "--out", str(tmp_path / "s"), "--model", str(tmp_path / "tiny"), "--steps",
            "1", "--size", "32x32", "--iterations", "1", "--per-tag", "1", "--held-out", "0", *api]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"6 search prompts, 0 held out; generator: pipeline {tmp_path / 'tiny'} steps=1" in out
    assert "| 1 | #1 |" in out and "held-out" not in out
    state = json.loads((tmp_path / "s" / STATE).read_text())
    assert [c["rewrites"] for c in state["candidates"].values()] == [{"api": 6}, {"api": 6}]
    assert server.rewrites(ALL) == 6


@pytest.mark.parametrize(
    "extra, words_",
    [
        (["--generator", "world"], "needs a reasoner"),
        (["--reasoner", "local", "--generator", "world"], "needs an editor LLM"),
        (["--api-model", "m", "--iterations", "-1"], "--iterations"),
        (["--api-model", "m", "--system-prompt-file", "/nonexistent/p.txt"], "cannot read it"),
    ],
)
def test_cli_search_checks_its_options_first(tmp_path, capsys, extra, words_):
    assert main(["reasoner", "search", "--out", str(tmp_path / "s"), *extra]) == 2
    assert words_ in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
