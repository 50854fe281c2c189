"""Budgets: a run stops at a chunk boundary before it would spend more, keeps what it finished,
and `--resume` with a larger budget finishes it without asking anything twice."""

from __future__ import annotations

import subprocess
import sys

import pytest

from factory.dataset.folder import DatasetFolder
from factory.engine.budget import Budget, BudgetGate
from factory.engine.journal import RunJournal
from factory.errors import BudgetReached, InputError
from factory.recipes import apply_overrides, load_recipe
from factory.records import DialogueRecord, GenerationMeta
from factory.run import run_recipe
from tests.conftest import subprocess_env
from tests.recipes import small_recipe, write_recipe

GENERATOR_SYSTEM = "You write natural"
CHUNK = 2


def _recipe(tmp_path, **llm: object):
    recipe = small_recipe(
        dialogues=12,
        ray={"enabled": False},
        generation={"min_turns": 4, "max_turns": 8, "few_shot": 1, "chunk_size": CHUNK},
        llm={"max_retries": 2, "backoff_base": 0.05, "cache": {"enabled": False}, **llm},
    )
    return write_recipe(tmp_path, recipe)


def _generation_calls(server) -> int:
    return sum(r["messages"][0]["content"].startswith(GENERATOR_SYSTEM) for r in server.requests)


def test_a_budget_stops_at_a_chunk_boundary_and_resume_finishes(tmp_path, scripted_server):
    recipe = apply_overrides(load_recipe(_recipe(tmp_path)), base_url=scripted_server.base_url)
    out = tmp_path / "out"
    # a first version: the next run's first chunks are priced by what it measured (without one, by the worst case)
    whole = run_recipe(recipe, out, show_progress=False).stats.total_tokens
    calls_of_a_whole_run = _generation_calls(scripted_server)
    assert calls_of_a_whole_run == 12

    with pytest.raises(BudgetReached) as stopped:
        run_recipe(recipe, out, show_progress=False, budget=Budget(max_tokens=whole // 3))
    message = str(stopped.value)
    assert "--resume" in message and "--max-tokens" in message and "\n" not in message
    journal = RunJournal(DatasetFolder(out).state / "run" / "journal")
    kept = journal.rows
    assert 0 < kept < 12 and kept % CHUNK == 0  # whole chunks, nothing half written
    spent = sum(
        r.generation.usage.total_tokens + sum(v.tokens for v in r.verdicts) for b in journal.batches() for r in b
    )
    assert spent <= whole // 3
    journal.close()
    assert DatasetFolder(out).versions() == ["v1.0.0"]  # nothing is published from a stopped run

    result = run_recipe(recipe, out, show_progress=False, resume=True, budget=Budget(max_tokens=whole * 2))
    assert result.version == "v1.1.0" and result.stats.generated == 12
    assert _generation_calls(scripted_server) == 2 * calls_of_a_whole_run  # the resume asked only what was left
    assert result.stats.total_tokens == whole


def test_the_command_line_says_how_to_go_on_and_refuses_an_unpriced_cost_budget(tmp_path, scripted_server):
    path = _recipe(tmp_path)

    def run(*flags: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "factory.cli", "run", str(path), "--out", str(tmp_path / "out")]
        command += ["--base-url", scripted_server.base_url, "--no-progress", *flags]
        return subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300)

    unpriced = run("--max-cost", "0.01")
    assert unpriced.returncode == 2
    assert unpriced.stderr.strip().splitlines() == [
        "error: field '--max-cost': a cost budget needs every endpoint's price: set llm.pricing (and the judges' "
        "own when they are on other servers)"
    ]
    assert scripted_server.chat_calls == 0

    stopped = run("--max-tokens", "500")
    assert stopped.returncode == 1
    (line,) = stopped.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: the budget stopped the run:") and "--resume" in line
    suggested = int(line.rsplit("--max-tokens ", 1)[1])
    assert suggested > 500  # a budget that would finish the run, not the one that stopped it


def test_a_budget_must_be_positive():
    with pytest.raises(InputError, match="--max-tokens"):
        Budget(max_tokens=0)
    for bad in ("nan", "inf", "-1"):
        with pytest.raises(InputError, match="--max-cost"):
            Budget(max_cost=float(bad))


def test_a_chunk_that_cannot_be_priced_runs_alone_until_it_is_measured():
    from factory.llm.pricing import Prices
    from factory.records import TokenUsage

    gate = BudgetGate(Budget(max_tokens=1_000), Prices(None, {}), 0.0, None)  # the plan could not price one
    chunk = [("row", []), ("row", [])]
    chunks = gate.gate(iter([chunk] * 5))
    assert next(chunks) == chunk and gate.in_flight == 2
    assert list(chunks) == [] and gate.measuring()  # nothing else starts before the first is measured
    usage = TokenUsage(prompt_tokens=300, completion_tokens=100)
    finished = [
        DialogueRecord(
            id=f"d{n}",
            recipe="r",
            speakers=[],
            turns=[],
            generation=GenerationMeta(model="m", seed=n, prompt_hash="", usage=usage),
        )
        for n in range(2)
    ]
    gate.done(finished)
    assert not gate.measuring() and gate.per_dialogue()[0] == 400
    admitted = list(gate.gate(iter([chunk] * 5)))
    assert len(admitted) == 0 and gate.reason() == "800 tokens spent of --max-tokens 1,000"  # 800 + 2 x 400 > 1,000


@pytest.mark.parametrize("mode", ["role_play", "spc"])
def test_a_small_budget_stops_every_mode_with_critics_on_and_resume_finishes(tmp_path, scripted_server, mode):
    recipe = small_recipe(
        dialogues=6, ray={"enabled": False},
        generation={"mode": mode, "min_turns": 4, "max_turns": 6, "few_shot": 1, "chunk_size": CHUNK},
        critics={"faithfulness": {"enabled": True}},
        llm={"max_retries": 2, "backoff_base": 0.05, "cache": {"enabled": False}},
    )  # fmt: skip
    loaded = apply_overrides(load_recipe(write_recipe(tmp_path, recipe)), base_url=scripted_server.base_url)
    out = tmp_path / "out"
    with pytest.raises(BudgetReached) as stopped:
        run_recipe(loaded, out, show_progress=False, budget=Budget(max_tokens=300))
    journal = RunJournal(DatasetFolder(out).state / "run" / "journal")
    records = [record for batch in journal.batches() for record in batch]
    journal.close()
    spent = sum(r.generation.usage.total_tokens + sum(v.tokens for v in r.verdicts) for r in records)
    per_chunk = max((spent / len(records)) * CHUNK, 0) if records else 0
    assert spent <= 300 + per_chunk  # the budget, and at most the one chunk that measured it
    assert f"{spent:,} tokens spent of --max-tokens 300" in str(stopped.value)  # what was spent, at the end
    assert f"{len(records)} of 6 dialogues are finished and journaled" in str(stopped.value)
    resumed = run_recipe(loaded, out, show_progress=False, resume=True, budget=Budget(max_tokens=10_000_000))
    assert resumed.stats.generated == 6
