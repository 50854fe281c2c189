"""From a persona pool to a model's score on the packaged SmolLM2-135M model: the shipped
persona_pool recipe (a small pool in PersonaHub's layout) writes a version with persona-disjoint
train and test splits of its messages config, and `eval-model` plays the test split's personas
with the embedded model as the model under test, its judges and its user simulator."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import datasets
import pytest
import yaml

from tests.conftest import subprocess_env

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "factory.cli", *args], capture_output=True, text=True, env=subprocess_env(), timeout=1200
    )


def test_a_pool_version_and_the_embedded_model_scored_on_its_held_out_personas(tmp_path, project_root):
    recipe = yaml.safe_load((project_root / "pipelines/persona_pool.yaml").read_text(encoding="utf-8"))
    shutil.copy(project_root / "pipelines/persona_pool.jsonl", tmp_path / "persona_pool.jsonl")
    # The shipped recipe's critics accept two at most of the 135M model's 12 dialogues (its second
    # speaker talks about the first speaker's persona), so this run keeps the heuristic gate alone,
    # and one line a turn: what is under test is the path, not the small model's data.
    recipe["critics"] = {
        "heuristic": {"enabled": True},
        "learned": {"enabled": False},
        "grounding": {"enabled": False},
        "faithfulness": {"enabled": False},
    }
    recipe["generation"]["role_play"]["line_candidates"] = 1
    recipe["casting"]["dialogues"] = 16  # four in the test split: one at least passes the gate
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    out, evaluation = tmp_path / "out", tmp_path / "eval"

    made = cli("run", str(tmp_path / "recipe.yaml"), "--out", str(out), "--no-progress")
    assert made.returncode == 0, made.stderr[-3000:]
    splits = {split: list(datasets.load_dataset(str(out), "messages", split=split)) for split in ("train", "test")}
    personas = {split: {row["persona"] for row in rows} for split, rows in splits.items()}
    assert personas["train"] and personas["test"] and not personas["train"] & personas["test"]

    scored = cli(
        "eval-model", str(out), "--out", str(evaluation), "--personas", "2", "--turns", "2",
        "--experts", "apc,attribution", "--no-progress",
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-3000:]
    report = json.loads((evaluation / "report.json").read_text(encoding="utf-8"))
    model = report["models"][0]
    assert model["model"]["endpoint_kind"] == "embedded" and report["dataset"]["revision"] == "v1.0.0"
    played = min(2, len(personas["test"]))
    assert report["personas"] == played and model["conversations"] == played
    for critic in ("apc", "attribution"):
        figure = model["overall"][critic]
        assert figure["judged"] + figure["unanswered"] == played - model["failed"]
    transcripts = datasets.load_dataset(str(evaluation), split="a")
    assert {row["speakers"][1]["id"] for row in transcripts} <= personas["test"]
    assert all(len(row["turns"]) == 4 for row in transcripts if row["verdicts"][0]["passed"])
