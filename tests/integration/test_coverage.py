"""casting.accepted_per_cell: the quota cells the critics emptied are cast again until they hold
their share of accepted dialogues, or the card names them and the critic that emptied them."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import pytest
import yaml

from factory.failpoints import ENV as FAILPOINT
from factory.recipes import load_recipe
from factory.run import run_recipe
from factory.traits import MBTI_TYPES
from tests.conftest import subprocess_env
from tests.openai_server import ScriptedOpenAIServer
from tests.recipes import write_recipe
from tests.scripts import GOOD, dialogue_reply

CONTRADICTION = '{"contradiction": true, "speaker": "User 1", "reason": "contradicts their own profile"}'


class TypeJudge:
    """Writes every dialogue well; its faithfulness judge finds a contradiction in dialogues with
    a speaker of the ``rejected`` types: the first ``times`` such dialogues of a type (or always)."""

    def __init__(self, rejected: list[str], times: int | None) -> None:
        self.rejected, self.times = rejected, times
        self.rejections: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> Any:
        system, user = request["messages"][0]["content"], request["messages"][-1]["content"]
        if system.startswith("You are a careful annotator"):
            present = [code for code in self.rejected if MBTI_TYPES[code].statements[0] in user]
            with self._lock:
                due = [code for code in present if self.times is None or self.rejections[code] < self.times]
                self.rejections.update(due)
            if due:
                return CONTRADICTION
        return dialogue_reply(request, lambda prompt, seed=None: GOOD)


def quota_recipe(base_url: str, **casting: Any) -> dict[str, Any]:
    return {
        "name": "cells",
        "seed": 5,
        "personas": [{"source": "mbti", "count": 16}],
        "casting": {"strategy": "quota", "quota": [{"by": "mbti"}], "dialogues": 8, **casting},
        "generation": {"min_turns": 4, "max_turns": 8, "few_shot": 1, "chunk_size": 4},
        "critics": {"faithfulness": {"enabled": True}},
        "llm": {"base_url": base_url, "model": "scripted", "cache": {"enabled": False}, "max_retries": 1},
        "ray": {"enabled": False},
    }


def run_with(tmp_path, judge: TypeJudge, **casting: Any) -> tuple[dict[str, Any], str]:
    with ScriptedOpenAIServer(judge) as server:
        path = write_recipe(tmp_path, quota_recipe(server.base_url, **casting))
        run_recipe(load_recipe(path), tmp_path / "out", show_progress=False)
    card = (tmp_path / "out" / "README.md").read_text()
    return yaml.safe_load(card.split("---\n")[1])["persona_factory"], card


def test_cells_the_critics_emptied_are_topped_up_to_their_share(tmp_path):
    meta, card = run_with(tmp_path, TypeJudge(["INTJ", "ESFP"], times=1), accepted_per_cell=1)
    coverage = {row["cell"]: row for row in meta["coverage"]}
    assert set(coverage) == {f"mbti={code}" for code in MBTI_TYPES}
    # the first round held each type once; the two rejected types (and their partners) were cast again
    assert coverage["mbti=INTJ"]["cast"] >= 2 and coverage["mbti=ESFP"]["cast"] >= 2
    assert all(row["accepted"] >= 1 and row["filled"] for row in coverage.values())
    assert len(meta["rounds"]) >= 2 and meta["rounds"][1]["casts"] >= 1
    assert "## Coverage after filtering" in card and "Not filled" not in card


def test_a_cell_no_cast_can_fill_is_named_with_the_critic(tmp_path):
    meta, card = run_with(tmp_path, TypeJudge(["INTJ"], times=None), accepted_per_cell=1, cell_attempts=3)
    coverage = {row["cell"]: row for row in meta["coverage"]}
    intj = coverage["mbti=INTJ"]
    assert (intj["cast"], intj["accepted"], intj["filled"]) == (3, 0, False)  # out of attempts
    assert intj["rejected_most_by"] == "faithfulness"
    assert all(row["filled"] for cell, row in coverage.items() if cell != "mbti=INTJ")
    assert "Not filled: mbti=INTJ (0 of 1, mostly `faithfulness`)." in card


def test_the_plan_tells_how_many_casts_the_top_ups_may_add(tmp_path):
    from factory.plan import plan_run

    recipe = load_recipe(
        write_recipe(tmp_path, quota_recipe("http://127.0.0.1:9/v1", accepted_per_cell=1, cell_attempts=3))
    )
    # 8 dialogues of two speakers hold each of the 16 types once: 2 more casts each at most
    rendered = plan_run(recipe).render()
    assert "top-up rounds may add up to 32 casts" in rendered


@pytest.mark.slow
def test_a_run_killed_in_a_top_up_round_resumes_to_the_same_version(tmp_path):
    """Top-up casts depend only on the rounds before them and the seed: a run killed in its first
    top-up round and resumed holds the dialogues an uninterrupted run holds."""
    judge = TypeJudge(["INTJ"], times=None)  # the same verdicts however often it is asked
    with ScriptedOpenAIServer(judge) as server:
        path = write_recipe(tmp_path, quota_recipe(server.base_url, accepted_per_cell=1, cell_attempts=3))
        whole = run_recipe(load_recipe(path), tmp_path / "whole", show_progress=False)
        killed = subprocess.run(
            [sys.executable, "-m", "factory.cli", "run", str(path), "--out", str(tmp_path / "killed"), "--no-progress"],
            env=subprocess_env(**{FAILPOINT: "journaled:3"}), capture_output=True, timeout=300,
        )  # fmt: skip
        assert killed.returncode == -signal.SIGKILL  # after the first round's two chunks and one more
        resumed = run_recipe(load_recipe(path), tmp_path / "killed", show_progress=False, resume=True)

    def ids(folder: Path) -> list[str]:
        return sorted(row["id"] for row in datasets.load_dataset(str(folder), split="accepted")) + sorted(
            row["id"] for row in datasets.load_dataset(str(folder), split="rejected")
        )

    assert ids(tmp_path / "killed") == ids(tmp_path / "whole")
    assert resumed.manifest["rounds"] == whole.manifest["rounds"]
    assert len(whole.manifest["rounds"]) >= 3  # the first round and at least two top-ups for INTJ


def test_the_progress_line_grows_with_each_top_up_round(tmp_path, capsys):
    judge = TypeJudge(["INTJ"], times=None)
    with ScriptedOpenAIServer(judge) as server:
        path = write_recipe(tmp_path, quota_recipe(server.base_url, accepted_per_cell=1, cell_attempts=2))
        run_recipe(load_recipe(path), tmp_path / "out", show_progress=True, quiet=True)
    said = capsys.readouterr().err
    # INTJ's one dialogue was rejected, emptying its partner's cell too: one new cast each; then
    # INTJ is out of attempts (2) and its partner full
    assert "2 more dialogue(s): top-up round 1 for cells short of accepted_per_cell" in said
    assert said.strip().splitlines()[-1].startswith("dialogues: 10/10 (100%)")  # the total counts the top-up
