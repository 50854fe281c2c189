"""A run killed outright (SIGKILL) at any point resumes with --resume: the finished version has
exactly the planned dialogues, none lost, none twice, and the calls of the resumed run prove that
no finished dialogue was generated or judged again."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest

from factory.critics.registry import critic_specs
from factory.engine.journal import RunJournal
from factory.errors import OutputError, RecipeError
from factory.failpoints import ENV as FAILPOINT
from factory.personas import plan
from factory.recipes import apply_overrides, load_recipe
from factory.run import run_recipe
from tests.conftest import subprocess_env
from tests.recipes import small_recipe, write_recipe

pytestmark = [pytest.mark.slow]
LLM_EXPERTS = set(critic_specs()) - {"heuristic"}
DIALOGUES = 12


def resumable_recipe(tmp_path: Path, on_ray: bool = False) -> Path:
    # two requests at a time keep two chunks in flight, so kills land between chunks finishing
    recipe = small_recipe(
        dialogues=DIALOGUES, generation={"chunk_size": 2}, ray={"enabled": on_ray}, llm={"max_concurrency": 2}
    )
    return write_recipe(tmp_path, recipe)


def killed_run(recipe_path: Path, out: Path, base_url: str, failpoint: str) -> None:
    """The CLI, killed with SIGKILL at the failpoint; Ray's processes go with its process group."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "factory.cli",
            "run",
            str(recipe_path),
            "--out",
            str(out),
            "--base-url",
            base_url,
            "--no-progress",
        ],
        env=subprocess_env(**{FAILPOINT: failpoint}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL, f"the run was not killed at {failpoint}: {stderr.decode()[-2000:]}"


def settled(server) -> int:
    """The server's call count once the killed run's last stragglers (a Ray worker outliving its
    driver by a moment) have stopped calling."""
    last, stable_since = server.chat_calls, time.monotonic()
    deadline = stable_since + 20
    while time.monotonic() - stable_since < 1.5 and time.monotonic() < deadline:
        time.sleep(0.1)
        if server.chat_calls != last:
            last, stable_since = server.chat_calls, time.monotonic()
    return last


def journal_ids(out: Path) -> set[str]:
    with RunJournal(out / ".persona-factory" / "run" / "journal") as journal:
        return {record.id for batch in journal.batches() for record in batch}


def calls_of(record: dict) -> int:
    """The requests one dialogue costs: its generation and each LLM expert's verdict."""
    return 1 + sum(verdict["critic"] in LLM_EXPERTS for verdict in record["verdicts"])


@pytest.mark.parametrize(
    "failpoint, finished_at_kill",
    [
        ("planned", 0),  # before generation
        ("journaled:2", 4),  # mid-generation: two chunks of two written down
        ("judging:7", None),  # mid-critique: dialogues written but not yet judged are in flight
        ("writing", DIALOGUES),  # while writing the version: every dialogue is finished
    ],
)
def test_resume_after_a_kill(tmp_path, scripted_server, failpoint, finished_at_kill):
    recipe_path = resumable_recipe(tmp_path)
    out = tmp_path / "out"
    killed_run(recipe_path, out, scripted_server.base_url, failpoint)

    assert not (out / "data").exists(), "a killed run publishes nothing"
    done = journal_ids(out)
    if finished_at_kill is not None:
        assert len(done) == finished_at_kill
    else:
        assert 0 < len(done) < DIALOGUES

    recipe = apply_overrides(load_recipe(recipe_path), base_url=scripted_server.base_url)
    before = scripted_server.chat_calls
    result = run_recipe(recipe, out, show_progress=False, resume=True)
    resumed_calls = scripted_server.chat_calls - before

    rows = [row for split in datasets.load_dataset(str(out)).values() for row in split]
    planned_ids = {cast.dialogue_id for cast in plan(recipe).casts}
    assert sorted(row["id"] for row in rows) == sorted(planned_ids)
    # what the unfinished dialogues cost: asked now, or answered from the reply cache (a call that
    # was answered before the kill is not paid for again)
    endpoint = result.manifest["execution"]["endpoints"][scripted_server.base_url]
    assert endpoint["cache_misses"] == resumed_calls
    assert resumed_calls + endpoint["cache_hits"] == sum(calls_of(row) for row in rows if row["id"] not in done)
    assert result.manifest["resumed_with"]["dialogues"] == len(done)
    assert not (out / ".persona-factory" / "run").exists()


@pytest.mark.ray
def test_resume_a_run_on_ray_killed_mid_generation(tmp_path, scripted_server):
    recipe_path = resumable_recipe(tmp_path, on_ray=True)
    out = tmp_path / "out"
    killed_run(recipe_path, out, scripted_server.base_url, "journaled:3")
    done = journal_ids(out)
    assert len(done) == 6

    recipe = apply_overrides(load_recipe(recipe_path), base_url=scripted_server.base_url)
    before = settled(scripted_server)
    result = run_recipe(recipe, out, show_progress=False, resume=True)
    rows = [row for split in datasets.load_dataset(str(out)).values() for row in split]
    assert len(rows) == DIALOGUES == len({row["id"] for row in rows})
    endpoint = result.manifest["execution"]["endpoints"][scripted_server.base_url]
    asked = scripted_server.chat_calls - before
    assert endpoint["cache_misses"] == asked
    assert asked + endpoint["cache_hits"] == sum(calls_of(row) for row in rows if row["id"] not in done)


def test_a_changed_recipe_cannot_resume_and_says_why(tmp_path, scripted_server):
    recipe_path = resumable_recipe(tmp_path)
    out = tmp_path / "out"
    killed_run(recipe_path, out, scripted_server.base_url, "journaled:1")

    changed = small_recipe(dialogues=DIALOGUES, generation={"chunk_size": 2, "max_turns": 6}, ray={"enabled": False})
    recipe = apply_overrides(
        load_recipe(write_recipe(tmp_path, changed, "changed.yaml")), base_url=scripted_server.base_url
    )
    with pytest.raises(RecipeError, match=r"the recipe changed since it started \(generation\.max_turns\).*--restart"):
        run_recipe(recipe, out, show_progress=False, resume=True)
    with pytest.raises(OutputError, match=r"interrupted run .*\(2 of 12 dialogues finished\).*--resume.*--restart"):
        run_recipe(recipe, out, show_progress=False)

    # where the work runs and how hard the endpoint is pushed may change between attempts
    pushed = small_recipe(
        dialogues=DIALOGUES,
        generation={"chunk_size": 3},
        ray={"enabled": False},
        llm={"max_concurrency": 3, "max_retries": 4},
    )
    same = apply_overrides(
        load_recipe(write_recipe(tmp_path, pushed, "pushed.yaml")), base_url=scripted_server.base_url
    )
    before = scripted_server.chat_calls
    result = run_recipe(same, out, show_progress=False, resume=True)
    assert result.manifest["resumed_with"]["dialogues"] == 2
    assert result.stats.generated == DIALOGUES
    assert scripted_server.chat_calls - before > 0


def test_restart_discards_the_interrupted_run(tmp_path, scripted_server):
    recipe_path = resumable_recipe(tmp_path)
    out = tmp_path / "out"
    killed_run(recipe_path, out, scripted_server.base_url, "journaled:1")
    recipe = apply_overrides(load_recipe(recipe_path), base_url=scripted_server.base_url)
    result = run_recipe(recipe, out, show_progress=False, restart=True)
    assert result.manifest["resumed_with"] is None
    assert result.stats.generated == DIALOGUES
    with pytest.raises(OutputError, match="no interrupted run to resume"):
        run_recipe(recipe, out, show_progress=False, resume=True)


def test_edited_inputs_cannot_resume_and_say_which(tmp_path, scripted_server):
    personas = tmp_path / "personas.csv"
    personas.write_text(
        "user 1 personas,user 2 personas\n"
        + "".join(f'"I am person {n}a.\nI like tea.","I am person {n}b.\nI run."\n' for n in range(6))
    )
    recipe = small_recipe(
        dialogues=DIALOGUES,
        generation={"chunk_size": 2},
        ray={"enabled": False},
        llm={"max_concurrency": 2},
        personas=[{"source": "statements", "path": personas.name}],
    )
    recipe_path = write_recipe(tmp_path, recipe)
    out = tmp_path / "out"
    killed_run(recipe_path, out, scripted_server.base_url, "journaled:1")
    personas.write_text(personas.read_text().replace("I like tea.", "I like coffee."))
    loaded = apply_overrides(load_recipe(recipe_path), base_url=scripted_server.base_url)
    with pytest.raises(RecipeError, match=r"the content of personas\[0\] changed since it started.*--restart"):
        run_recipe(loaded, out, show_progress=False, resume=True)


def test_resume_with_nothing_to_resume_says_so_before_starting_a_model(tmp_path, monkeypatch):
    from factory.llm.embedded import EmbeddedServer

    def no_model(self):
        raise AssertionError("the embedded model was started for a run that cannot resume")

    monkeypatch.setattr(EmbeddedServer, "start", no_model)
    recipe = load_recipe(resumable_recipe(tmp_path))
    assert recipe.llm.base_url is None  # the embedded model would serve it
    with pytest.raises(OutputError, match="has no interrupted run to resume"):
        run_recipe(recipe, tmp_path / "out", show_progress=False, resume=True)
    assert not (tmp_path / "out").exists()


def test_a_second_run_cannot_touch_a_version_being_written(tmp_path, scripted_server, monkeypatch):
    import threading

    import factory.dataset.dialogues

    writing, release = threading.Event(), threading.Event()

    def pause_while_writing(name: str) -> None:
        if name == "writing" and not writing.is_set():
            writing.set()
            release.wait(60)

    monkeypatch.setattr(factory.dataset.dialogues, "failpoint", pause_while_writing)
    recipe = apply_overrides(load_recipe(resumable_recipe(tmp_path)), base_url=scripted_server.base_url)
    out = tmp_path / "out"
    outcome: dict = {}

    def first() -> None:
        try:
            outcome["result"] = run_recipe(recipe, out, show_progress=False)
        except BaseException as exc:
            outcome["error"] = exc

    runner = threading.Thread(target=first)
    runner.start()
    try:
        assert writing.wait(120), "the first run never reached the writing of its version"
        staging = list((out / ".persona-factory" / "staging").iterdir())
        with pytest.raises(OutputError, match="another persona-factory command is using"):
            run_recipe(recipe, out, show_progress=False)
        assert list((out / ".persona-factory" / "staging").iterdir()) == staging  # untouched
    finally:
        release.set()
        runner.join(120)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].version == "v1.0.0" and outcome["result"].stats.generated == DIALOGUES
