"""`persona-factory plan`: the calls and tokens of a recipe, told before it runs, against what the
run then asks of the endpoint."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from factory.dataset.folder import DatasetFolder
from factory.llm.embedded import embedded_model_path
from factory.llm.tokens import counter_for
from factory.plan import plan_run
from factory.recipes import apply_overrides, load_recipe
from factory.run import run_recipe
from tests.conftest import subprocess_env
from tests.openai_server import ScriptedOpenAIServer
from tests.recipes import small_recipe, write_recipe
from tests.scripts import DialogueScript

STEP_OF_SYSTEM = {
    "You write natural": "generation",
    "You are a careful annotator": "faithfulness",
}


def _step(request: dict) -> str:
    system = request["messages"][0]["content"]
    return next((step for head, step in STEP_OF_SYSTEM.items() if system.startswith(head)), system.split(".")[0])


def _calls_by_step(requests: list[dict]) -> Counter[str]:
    return Counter(_step(request) for request in requests)


def _recipe(**critics: object) -> dict:
    return small_recipe(
        dialogues=6,
        ray={"enabled": False},
        generation={"min_turns": 4, "max_turns": 8, "few_shot": 1, "chunk_size": 4, "candidates": 2, "rounds": 2},
        llm={
            "max_retries": 2, "backoff_base": 0.05, "backoff_max": 0.2,
            "tokenizer": str(embedded_model_path()), "cache": {"enabled": False},
            "pricing": {"input_per_mtok": 0.5, "output_per_mtok": 1.5},
        },
        critics={"quality": {"enabled": True}, "apc": {"enabled": True}, **critics},
    )  # fmt: skip


@pytest.fixture
def counted_server():
    """The scripted endpoint, counting tokens with the embedded model's tokenizer as the plan does."""
    counter = counter_for(embedded_model_path())
    with ScriptedOpenAIServer(DialogueScript(), count_tokens=counter.count, count_prompt=counter.messages) as server:
        yield server


def test_the_worst_case_counts_every_call_a_run_can_make(tmp_path, counted_server):
    # every dialogue the script writes passes the gates here, so the run makes the worst case's calls
    path = write_recipe(tmp_path, _recipe(heuristic={"enabled": False}))
    recipe = apply_overrides(load_recipe(path), base_url=counted_server.base_url)
    before = plan_run(recipe)
    assert before.dialogues == 12 and before.rounds == 2
    worst = {step.step: step.calls_worst for step in before.steps}
    assert worst["generation"] == 12
    assert worst["faithfulness"] == 12
    assert worst["apc"] == sum(2 * sum(1 for s in cast.speakers if s.statements) for cast in _casts(recipe))
    assert worst["quality"] == 6  # one pair per cast

    run_recipe(recipe, tmp_path / "out", show_progress=False)
    asked = _calls_by_step(counted_server.requests)
    judged_by_quality = asked.pop("You compare two conversations", 0)
    assert asked["generation"] == worst["generation"]
    assert asked["faithfulness"] <= worst["faithfulness"]
    assert judged_by_quality <= worst["quality"]
    assert sum(asked.values()) + judged_by_quality <= sum(worst.values())


def _casts(recipe):
    from factory.personas import plan

    return plan(recipe).casts


def test_the_expected_case_of_a_rerun_is_what_the_rerun_asks(tmp_path, counted_server):
    path = write_recipe(tmp_path, _recipe())
    recipe = apply_overrides(load_recipe(path), base_url=counted_server.base_url)
    out = tmp_path / "out"
    run_recipe(recipe, out, show_progress=False)
    first_calls = counted_server.chat_calls
    folder = DatasetFolder(out)
    version = folder.current_version()
    estimate = plan_run(recipe, folder.read_manifest(version), version)
    assert estimate.measured_on == version

    second = run_recipe(recipe, out, show_progress=False)  # the scripted outcomes repeat: the same passes
    asked = _calls_by_step(counted_server.requests[first_calls:])
    expected = {step.step: step.calls_expected for step in estimate.steps}
    assert asked["generation"] == expected["generation"] == 12
    assert asked["faithfulness"] == pytest.approx(expected["faithfulness"])
    assert expected["faithfulness"] < next(s.calls_worst for s in estimate.steps if s.step == "faithfulness")

    reported = second.stats.total_tokens
    assert estimate.expected_tokens() == pytest.approx(reported, rel=0.10)
    assert estimate.total_cost() == pytest.approx(second.stats.total_cost, rel=0.10)
    card = (out / "README.md").read_text(encoding="utf-8")
    cost_row = next(line for line in card.splitlines() if line.startswith("| cost |"))
    assert f"${second.stats.cost_per_accepted:,.4f}" in cost_row  # the card prices each accepted dialogue


def test_plan_prints_calls_tokens_and_cost_without_an_endpoint(tmp_path):
    path = write_recipe(tmp_path, _recipe())
    finished = subprocess.run(
        [sys.executable, "-m", "factory.cli", "plan", str(path), "--base-url", "http://127.0.0.1:9/v1", "--model", "m"],
        capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-2000:]
    lines = finished.stdout.splitlines()
    assert lines[0].startswith("plan of e2e: 6 casts x 2 candidates = 12 dialogues in 2 round(s)")
    generation = next(line for line in lines if line.startswith("generation"))
    assert generation.split()[2:4] == ["12", "12"] and "$" in generation
    assert any(line.startswith("total") for line in lines)
    assert "SmolLM2" in finished.stdout  # counted with the tokenizer named in the recipe
