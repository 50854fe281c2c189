"""The real llama.cpp server on the packaged SmolLM2-135M model, end to end (4 dialogues)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from tests.conftest import subprocess_env
from tests.recipes import small_recipe, write_recipe

pytestmark = [pytest.mark.embedded, pytest.mark.ray, pytest.mark.slow]


def test_embedded_model_end_to_end(tmp_path):
    recipe = small_recipe(
        dialogues=4,
        generation={"max_tokens": 200, "few_shot": 1},
        critics={"faithfulness": {"max_tokens": 80}},
        llm={},
    )
    path = write_recipe(tmp_path, recipe)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "factory.cli", "run", str(path), "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == str(out.resolve())

    dataset = datasets.load_dataset(str(out))
    rows = [row for split in dataset.values() for row in split]
    assert len(rows) == 4
    for row in rows:
        assert row["generation"]["model"] == "smollm2-135m-instruct"
        assert row["generation"]["endpoint_kind"] == "embedded"
        critics = [v["critic"] for v in row["verdicts"]]
        failed = [v["critic"] for v in row["verdicts"] if not v["passed"]]
        # the cascade: every expert up to the first hard gate that failed, none after it
        expected = ["format", "heuristic", "faithfulness"]
        assert critics == (expected[: expected.index(failed[0]) + 1] if failed else expected)
        assert row["raw_generation"], "the model answered"
        assert row["generation"]["usage"]["completion_tokens"] > 0
    judged = [v for row in rows for v in row["verdicts"] if v["critic"] == "faithfulness" and row["turns"]]
    # the grammar-constrained judge always answers in the schema, so no verdict is "unparsable"
    assert all("unparsable judge reply" not in v["reason"] for v in judged)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["endpoint"] == "embedded llama.cpp server"


def test_the_demo_shows_the_whole_path_on_the_embedded_model(tmp_path, project_root):
    """`make demo`: the shipped quickstart on the 135M model. The critics are as the recipe ships
    them, not loosened for a small model: most dialogues are well formed and reach the learned
    critic, which judges whether they read as real conversations (the grounding critic after it, each
    speaker's use of their persona); each rejection names its critic."""
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "factory.cli",
            "run",
            str(project_root / "pipelines" / "quickstart.yaml"),
            "--out",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [row for split in datasets.load_dataset(str(out)).values() for row in split]
    assert len(rows) == 8
    reached = [row for row in rows if any(v["critic"] == "learned" for v in row["verdicts"])]
    assert len(reached) * 2 > len(rows), [[(v["critic"], v["reason"][:80]) for v in row["verdicts"]] for row in rows]
    learned = [v for row in reached for v in row["verdicts"] if v["critic"] == "learned"]
    assert all(v["answered"] and v["judge"].startswith("learned ") and "p=" in v["reason"] for v in learned)
    grounding = [v for row in rows for v in row["verdicts"] if v["critic"] == "grounding"]
    assert all(v["answered"] and v["judge"].startswith("all-MiniLM-L6-v2") for v in grounding)
    for row in rows:
        failed = [v["critic"] for v in row["verdicts"] if not v["passed"]]
        assert row["accepted"] == (not failed)
    summary = result.stdout.splitlines()
    assert any(line.startswith("rejected by") for line in summary) and Path(summary[-1]).resolve() == out.resolve()
