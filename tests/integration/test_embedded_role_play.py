"""The two role-play recipes on the real embedded stack (SmolLM2 through llama.cpp's server), run
as a user would run them: the CLI, with the shipped recipes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml

from tests.conftest import subprocess_env

pytestmark = [pytest.mark.embedded, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "factory.cli", *args, "--no-progress"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=1800,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def check_role_play_dataset(out: Path, turns_between: tuple[int, int]) -> list[dict]:
    rows = [row for split in datasets.load_dataset(str(out)).values() for row in split]
    assert rows and all(row["generation"]["mode"] == "role_play" for row in rows)
    for row in rows:
        if row["turns"]:
            low, high = turns_between
            assert low <= len(row["turns"]) <= high, len(row["turns"])
            assert row["generation"]["ended_by"] in ("max_turns", "sentiment", "goal")
            assert {turn["speaker"] for turn in row["turns"]} <= {speaker["id"] for speaker in row["speakers"]}
    accepted = {row["id"]: row for row in rows if row["accepted"]}
    metadata = yaml.safe_load((out / "README.md").read_text(encoding="utf-8").split("---")[1])
    if accepted:
        chats = list(datasets.load_dataset(str(out), "messages", split="train"))
        assert {chat["id"] for chat in chats} == set(accepted)
        for chat in chats:
            assert [m["content"] for m in chat["messages"][1:]] == [t["text"] for t in accepted[chat["id"]]["turns"]]
        assert "messages" in [config["config_name"] for config in metadata["configs"]]
    assert metadata["persona_factory"]["stats"]["modes"][0]["mode"] == "role_play"
    return rows


def test_role_play_recipe_on_the_embedded_model(tmp_path):
    out = tmp_path / "role_play"
    cli("run", str(ROOT / "pipelines" / "role_play.yaml"), "--out", str(out), "--no-ray", cwd=tmp_path)
    rows = check_role_play_dataset(out, (4, 8 + 2))
    assert len(rows) == 4
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "smollm2-135m-instruct"


def test_user_simulator_recipe_on_the_embedded_model(tmp_path):
    # the recipe casts from the bank its comment says to build first, at out/implicit_users
    cli(
        "personas",
        "build",
        str(ROOT / "pipelines" / "implicit_users.yaml"),
        "--out",
        "out/implicit_users",
        cwd=tmp_path,
    )
    out = tmp_path / "user_simulator"
    cli("run", str(ROOT / "pipelines" / "user_simulator.yaml"), "--out", str(out), "--no-ray", cwd=tmp_path)
    rows = check_role_play_dataset(out, (2, 6 + 1))
    assert all(row["roles"] == ["user", "assistant"] and row["speakers"][0]["kind"] == "implicit" for row in rows)
