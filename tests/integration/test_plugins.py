"""A critic from a package installed beside the factory (``tests/plugins/assistant_voice``, found by
its ``persona_factory.critics`` entry point): recipes, ``plan``, the run's cascade and card,
the distilabel steps and ``critics eval`` all know it, with no line of the factory changed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import pytest

from tests.conftest import subprocess_env
from tests.integration.test_distilabel import STEPS_SCRIPT
from tests.openai_server import ScriptedOpenAIServer
from tests.recipes import small_recipe, write_recipe
from tests.scripts import CONTRADICTION_MARK, DialogueScript

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "assistant_voice"
PLUGIN_SYSTEM = "You listen for a speaker who talks like an AI assistant"


class PluginScript(DialogueScript):
    """The factory's scripted replies, and the plugin judge's: the speaker who says the
    contradiction line is the one 'talking like an assistant'."""

    def __call__(self, request: dict[str, Any]) -> Any:
        system, user = request["messages"][0]["content"], request["messages"][-1]["content"]
        if system.startswith(PLUGIN_SYSTEM):
            found = CONTRADICTION_MARK in user
            return json.dumps({"assistant_like": found, "speaker": "User 1" if found else "none"})
        return super().__call__(request)


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    source = shutil.copytree(PLUGIN, tmp_path_factory.mktemp("build") / PLUGIN.name)  # setuptools builds in the tree
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300, cwd=source,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    assert list(target.glob("persona_factory_assistant_voice-*.dist-info/entry_points.txt"))
    return target


@pytest.fixture
def server():
    with ScriptedOpenAIServer(PluginScript()) as running:
        yield running


def factory_cli(*args: str, plugin: Path | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(**({"PYTHONPATH": str(plugin)} if plugin else {}))
    return subprocess.run(
        [sys.executable, "-m", "factory.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def plugin_recipe(tmp_path: Path) -> Path:
    critics = {"faithfulness": {"enabled": False}, "assistant_voice": {"enabled": True, "max_tokens": 40}}
    return write_recipe(tmp_path, small_recipe(dialogues=8, ray={"enabled": False}, critics=critics))


def test_an_installed_critic_is_known_to_recipes_plan_run_card_and_eval(tmp_path, plugin_path, server):
    recipe = plugin_recipe(tmp_path)
    url = ["--base-url", server.base_url]

    planned = factory_cli("plan", str(recipe), *url, plugin=plugin_path, cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert "assistant_voice" in planned.stdout

    out = tmp_path / "out"
    ran = factory_cli("run", str(recipe), "--out", str(out), *url, "--no-progress", plugin=plugin_path, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    loaded = datasets.load_dataset(str(out))
    judged = [row for split in ("accepted", "rejected") for row in loaded[split]]
    verdicts = [v for row in judged for v in row["verdicts"] if v["critic"] == "assistant_voice"]
    assert verdicts and any(not v["passed"] for v in verdicts) and any(v["passed"] for v in verdicts)
    assert all(
        any(v["critic"] == "assistant_voice" and v["passed"] for v in row["verdicts"]) for row in loaded["accepted"]
    )
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "assistant_voice" in card

    rated = tmp_path / "rated.jsonl"
    rows = [(True, "We went sailing."), (False, f"{CONTRADICTION_MARK}!")]
    rated.write_text(
        "".join(
            json.dumps({"personas": [["I sail."], ["I cook."]], "well_formed": label,
                        "turns": [{"speaker": 1, "text": text}, {"speaker": 2, "text": "Nice."}]}) + "\n"
            for label, text in rows
        )
    )  # fmt: skip
    report = tmp_path / "report.json"
    evaluated = factory_cli(
        "critics", "eval", str(rated), "--experts", "assistant_voice", "--out", str(report), *url, "--no-progress",
        plugin=plugin_path, cwd=tmp_path,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    figure = json.loads(report.read_text())["experts"][0]
    assert figure["expert"] == "assistant_voice" and figure["accuracy"] == 1.0


def test_an_installed_critic_is_a_distilabel_step_of_the_recipe(tmp_path, plugin_path, server):
    recipe = plugin_recipe(tmp_path)
    script = tmp_path / "steps.py"
    script.write_text(STEPS_SCRIPT, encoding="utf-8")
    rows_file = tmp_path / "rows.json"
    env = subprocess_env(PYTHONPATH=str(plugin_path), DISTILABEL_CACHE_DIR=str(tmp_path / "distilabel"))
    finished = subprocess.run(
        [sys.executable, str(script), str(recipe), server.base_url, str(rows_file), "local"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    rows = json.loads(rows_file.read_text())
    judged = [v for row in rows for v in row["verdicts"] if v["critic"] == "assistant_voice"]
    assert judged and {v["passed"] for v in judged} == {True, False}


def test_without_the_package_its_critic_is_an_unknown_key(tmp_path):
    failed = factory_cli("plan", str(plugin_recipe(tmp_path)), plugin=None, cwd=tmp_path)
    assert failed.returncode != 0
    assert "critics.assistant_voice" in failed.stderr and "Traceback" not in failed.stderr
