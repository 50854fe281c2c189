"""Judges apart from the generator: each on its own scripted server, so where every call went can
be counted; a jury whose jurors disagree; a judge server that goes down; the flags."""

from __future__ import annotations

import json
import subprocess
import sys

import datasets
import pytest
import yaml

from factory.errors import EndpointError
from factory.recipes import apply_overrides, load_recipe
from factory.run import run_recipe
from tests.conftest import subprocess_env
from tests.openai_server import ScriptedOpenAIServer, ScriptedReply
from tests.recipes import small_recipe, write_recipe
from tests.scripts import DialogueScript

DIALOGUES = 8
GENERATOR_SYSTEM = "You write natural"
JUDGE_SYSTEM = "You are a careful annotator"
FAST_FAILING = {"max_retries": 2, "backoff_base": 0.05, "backoff_max": 0.2}


def _all_start_with(server: ScriptedOpenAIServer, system: str) -> bool:
    return bool(server.requests) and all(r["messages"][0]["content"].startswith(system) for r in server.requests)


def _rows(out) -> list[dict]:
    return [row for split in datasets.load_dataset(str(out)).values() for row in split]


def _run(tmp_path, generator: ScriptedOpenAIServer, name: str = "out", **overrides):
    recipe = small_recipe(dialogues=DIALOGUES, **overrides)
    path = write_recipe(tmp_path, recipe, f"{name}.yaml")
    return run_recipe(
        apply_overrides(load_recipe(path), base_url=generator.base_url), tmp_path / name, show_progress=False
    )


@pytest.mark.parametrize("on_ray", [False, pytest.param(True, marks=pytest.mark.ray)], ids=["in-process", "ray"])
def test_judges_on_their_own_server_get_every_judge_call_and_the_generator_none(tmp_path, on_ray):
    with (
        ScriptedOpenAIServer(DialogueScript()) as generator,
        ScriptedOpenAIServer(DialogueScript(), model="judge-model") as judge,
    ):
        result = _run(
            tmp_path, generator, ray={"enabled": on_ray}, critics={"llm": {"base_url": judge.base_url, **FAST_FAILING}}
        )
        rows = _rows(tmp_path / "out")
        faithfulness = [v for row in rows for v in row["verdicts"] if v["critic"] == "faithfulness"]
        assert faithfulness, "some dialogues should reach the judge"
        assert generator.chat_calls == DIALOGUES and _all_start_with(generator, GENERATOR_SYSTEM)
        assert judge.chat_calls == len(faithfulness) and _all_start_with(judge, JUDGE_SYSTEM)
        assert {request["model"] for request in judge.requests} == {"judge-model"}  # the model it lists

    assert {v["judge"] for v in faithfulness} == {"judge-model"}
    assert {v["judge"] for row in rows for v in row["verdicts"] if v["critic"] in ("format", "heuristic")} == {None}
    endpoints = result.manifest["execution"]["endpoints"]
    assert endpoints[judge.base_url]["calls"] == len(faithfulness)
    assert endpoints[generator.base_url]["calls"] == DIALOGUES
    jurors = result.manifest["judges"]["faithfulness"]["jurors"]
    assert [(j["model"], j["endpoint"]) for j in jurors] == [("judge-model", judge.base_url)]
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "| faithfulness | `judge-model` |" in card
    assert "Warning" not in card


def test_the_card_warns_when_the_generator_judges_its_own_dialogues(tmp_path, scripted_server):
    _run(tmp_path, scripted_server)
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "| faithfulness | `scripted-model` |" in card
    assert "**Warning:** `faithfulness` is judged by `scripted-model`, the model that wrote the dialogues" in card
    assert "| heuristic | rules |" in card


def _always(contradiction: bool):
    answer = {"reason": "judged", "speaker": "User 1" if contradiction else "none", "contradiction": contradiction}

    def script(request: dict) -> str:
        return json.dumps(answer)

    return script


@pytest.mark.parametrize(("aggregate", "passes"), [("majority", False), ("mean", True)])
def test_a_jury_that_disagrees_keeps_both_verdicts_and_the_aggregate_decides(tmp_path, aggregate, passes):
    with (
        ScriptedOpenAIServer(DialogueScript()) as generator,
        ScriptedOpenAIServer(_always(False), model="lenient") as lenient,
        ScriptedOpenAIServer(_always(True), model="strict") as strict,
    ):
        jury = {"judges": [{"base_url": lenient.base_url}, {"base_url": strict.base_url}], "aggregate": aggregate}
        result = _run(tmp_path, generator, ray={"enabled": False}, critics={"jury": jury})
        rows = _rows(tmp_path / "out")
        judged = [v for row in rows for v in row["verdicts"] if v["critic"] == "faithfulness"]
        assert judged and lenient.chat_calls == strict.chat_calls == len(judged)
    for verdict in judged:
        assert verdict["passed"] is passes and verdict["score"] == 0.5
        assert verdict["judge"] == "lenient + strict"
        assert [(j["judge"], j["passed"]) for j in verdict["jurors"]] == [("lenient", True), ("strict", False)]
    assert result.manifest["judges"]["faithfulness"]["aggregate"] == aggregate
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "| faithfulness | `lenient`, `strict` |" in card


def test_a_judge_server_down_for_good_stops_the_run_and_it_resumes_later(tmp_path):
    with (
        ScriptedOpenAIServer(DialogueScript()) as generator,
        ScriptedOpenAIServer(DialogueScript(), model="judge-model") as judge,
    ):
        down = {"now": True}
        script = judge.script
        judge.script = lambda request: ScriptedReply(status=502) if down["now"] else script(request)
        limits = {"outage_seconds": 1.0, "eject_after": 1, "eject_seconds": 0.1, "max_retries": 50}
        recipe = small_recipe(
            dialogues=DIALOGUES, ray={"enabled": False}, critics={"llm": {"base_url": judge.base_url, **limits}}
        )
        loaded = apply_overrides(load_recipe(write_recipe(tmp_path, recipe)), base_url=generator.base_url)
        with pytest.raises(EndpointError, match=r"no endpoint of judge-model answered for 1 s.*--resume"):
            run_recipe(loaded, tmp_path / "out", show_progress=False)
        assert not (tmp_path / "out" / "data").exists()
        assert generator.chat_calls >= 1

        down["now"] = False
        resumed = run_recipe(loaded, tmp_path / "out", show_progress=False, resume=True)
    assert resumed.stats.generated == DIALOGUES
    faithfulness = [v for row in _rows(tmp_path / "out") for v in row["verdicts"] if v["critic"] == "faithfulness"]
    assert faithfulness and all(v["answered"] and v["judge"] == "judge-model" for v in faithfulness)


def test_judge_flags_send_every_critic_call_of_the_quickstart_to_the_judge(tmp_path, project_root):
    """`run pipelines/quickstart.yaml --judge-base-url URL2 --judge-model M2`, as a user types it, on
    the quickstart with its learned critic off: that critic rightly rejects a scripted generator's
    stock lines before any judge sees them, and this is a test of where the judge's calls go."""
    recipe = yaml.safe_load((project_root / "pipelines" / "quickstart.yaml").read_text(encoding="utf-8"))
    recipe["critics"]["learned"]["enabled"] = False
    quickstart = tmp_path / "quickstart.yaml"
    quickstart.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    with (
        ScriptedOpenAIServer(_role_play_turns) as generator,
        ScriptedOpenAIServer(_always(False), model="served") as judge,
    ):
        out = tmp_path / "out"
        command = [
            sys.executable, "-m", "factory.cli", "run", str(quickstart),
            "--out", str(out), "--base-url", generator.base_url, "--judge-base-url", judge.base_url,
            "--judge-model", "M2", "--no-ray", "--no-progress",
        ]  # fmt: skip
        finished = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=600)
        assert finished.returncode == 0, finished.stderr[-2000:]
        judge_calls = judge.chat_calls
        assert judge_calls > 0 and {request["model"] for request in judge.requests} == {"M2"}
        assert all(not request["messages"][0]["content"].startswith(JUDGE_SYSTEM) for request in generator.requests)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["execution"]["endpoints"][judge.base_url]["calls"] == judge_calls
    llm_critics = {critic for critic, panel in manifest["judges"].items()}
    assert llm_critics == {"faithfulness"}
    assert all(j["model"] == "M2" for panel in manifest["judges"].values() for j in panel["jurors"])
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "| faithfulness | `M2` |" in card
    assert "| grounding | `all-MiniLM-L6-v2" in card  # the quickstart's model-free critic


OPENERS = ("Well,", "Honestly,", "You know,", "Funny you ask:", "As it happens,", "To be fair,", "Oh,", "Mind you,")


def _role_play_turns(request: dict) -> str:
    """A role-play agent's next line: one of its own persona statements, a different one each turn."""
    messages = request["messages"]
    facts = [line[2:] for line in messages[0]["content"].splitlines() if line.startswith("- ")] or ["I like my days."]
    turn = len(messages)
    fact = facts[turn % len(facts)]
    return f"{OPENERS[turn % len(OPENERS)]} {fact[0].lower() + fact[1:]}"


def test_critics_eval_sends_every_judge_call_to_the_judge_and_a_jury_works_there_too(tmp_path):
    from tests.integration.test_critics_eval import run_eval, write_spc

    data = tmp_path / "spc.csv"
    write_spc(data)
    with (
        ScriptedOpenAIServer(_always(False), model="lenient") as lenient,
        ScriptedOpenAIServer(_always(True), model="strict") as strict,
    ):
        # no --base-url: a judge of its own needs no generator, so no embedded model is started either
        report_path = tmp_path / "one.json"
        args = ["--experts", "faithfulness", "--count", "3", "--out", str(report_path)]
        finished = run_eval(str(data), *args, "--judge-base-url", strict.base_url, "--judge-model", "M2")
        assert finished.returncode == 0, finished.stderr[-2000:]
        assert strict.chat_calls == 6 and lenient.chat_calls == 0  # 3 originals, 3 swapped
        assert {request["model"] for request in strict.requests} == {"M2"}
        report = json.loads(report_path.read_text())
        assert report["model"] is None and report["judges"] == {"faithfulness": ["M2"]}

        jury = {"judges": [{"base_url": lenient.base_url}, {"base_url": strict.base_url}], "aggregate": "mean"}
        recipe = write_recipe(tmp_path, small_recipe(critics={"jury": jury}))
        report_path = tmp_path / "jury.json"
        args = ["--experts", "faithfulness", "--count", "3", "--out", str(report_path), "--recipe", str(recipe)]
        finished = run_eval(str(data), *args, "--per-item", str(tmp_path / "items.jsonl"))
        assert finished.returncode == 0, finished.stderr[-2000:]
        assert lenient.chat_calls == 6 and strict.chat_calls == 12
    assert json.loads(report_path.read_text())["judges"] == {"faithfulness": ["lenient", "strict"]}
    items = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    # the jurors disagree on every item: the mean of 1 and 0 passes at 0.5
    assert len(items) == 6 and all(item["passed"] and item["score"] == 0.5 for item in items)
