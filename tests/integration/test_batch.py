"""llm.batch: the calls of a run go through the endpoint's Files and Batches API: submitted,
polled, journaled; failed lines and expired batches asked again, alone; a resumed run polls the
batch it submitted before it was killed instead of submitting it again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from factory.recipes import apply_overrides, load_recipe
from factory.run import run_recipe
from tests.conftest import subprocess_env
from tests.recipes import small_recipe, write_recipe

GENERATOR_SYSTEM = "You write natural"
DIALOGUES = 8


def _recipe(tmp_path):
    recipe = small_recipe(
        dialogues=DIALOGUES,
        llm={"max_retries": 2, "batch": True, "batch_poll_seconds": 0.1, "cache": {"enabled": False}},
    )
    return write_recipe(tmp_path, recipe)


def _submitted_generation_lines(server) -> list[int]:
    """Per batch input file, how many of its lines ask for a dialogue."""
    counts = []
    for purpose, content in list(server.files.values()):
        if purpose == "batch":
            lines = [json.loads(line) for line in content.decode().splitlines() if line]
            counts.append(sum(line["body"]["messages"][0]["content"].startswith(GENERATOR_SYSTEM) for line in lines))
    return counts


def _run(tmp_path, server):
    recipe = apply_overrides(load_recipe(_recipe(tmp_path)), base_url=server.base_url)
    return run_recipe(recipe, tmp_path / "out", show_progress=False)


def test_a_batch_run_submits_polls_and_journals_without_a_chat_request(tmp_path, scripted_server):
    result = _run(tmp_path, scripted_server)
    assert result.stats.generated == DIALOGUES
    assert scripted_server.chat_calls == 0  # every call went out in a batch
    assert _submitted_generation_lines(scripted_server)[0] == DIALOGUES  # the round's dialogues, in one batch
    assert len(scripted_server.batches) >= 2  # then the critics' wave
    endpoint = result.manifest["execution"]["endpoints"][scripted_server.base_url]
    assert endpoint["batches"] == len(scripted_server.batches) and endpoint["batch_failed_lines"] == 0
    assert result.stats.generation_tokens > 0


def test_failed_lines_alone_are_asked_again(tmp_path, scripted_server):
    scripted_server.fail_batch_lines(2)
    result = _run(tmp_path, scripted_server)
    assert result.stats.generated == DIALOGUES
    assert sum(_submitted_generation_lines(scripted_server)) == DIALOGUES + 2
    assert result.manifest["execution"]["endpoints"][scripted_server.base_url]["batch_failed_lines"] == 2


def test_an_expired_batch_has_what_it_missed_submitted_again(tmp_path, scripted_server):
    scripted_server.expire_next_batch(after=3)
    result = _run(tmp_path, scripted_server)
    assert result.stats.generated == DIALOGUES
    assert sum(_submitted_generation_lines(scripted_server)) == DIALOGUES + (DIALOGUES - 3)
    assert any(batch["status"] == "expired" for batch in scripted_server.batches.values())


def test_a_resume_after_a_kill_polls_the_submitted_batch(tmp_path, scripted_server):
    scripted_server.batch_seconds = 4.0  # the batch is still running when the first attempt dies
    path = _recipe(tmp_path)
    command = [sys.executable, "-m", "factory.cli", "run", str(path), "--out", str(tmp_path / "out")]
    command += ["--base-url", scripted_server.base_url, "--no-progress"]
    process = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not scripted_server.batches and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scripted_server.batches, "the first attempt submitted no batch"
    time.sleep(0.5)  # past the registry's write
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)

    scripted_server.batch_seconds = 0.2
    resumed = subprocess.run([*command, "--resume"], env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{DIALOGUES} generated" in resumed.stdout
    assert sum(_submitted_generation_lines(scripted_server)) == DIALOGUES  # the dialogues' batch went out once
