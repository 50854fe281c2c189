"""The factory's critics as distilabel steps, on distilabel's own OpenAILLM against a scripted
server: the same verdicts as the engine's critics, and a foreign dataset judged through
``input_mappings``."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys

import pytest
from distilabel.models import OpenAILLM

from factory.critics.base import JudgeContext
from factory.critics.registry import verdict_of
from factory.distilabel import (
    APCCritic,
    AttributionCritic,
    FaithfulnessCritic,
    GroundingCritic,
    HeuristicCritic,
    LLMCriticStep,
    PortrayalCritic,
    ToxicityCritic,
)
from factory.distilabel.columns import conversation_of
from factory.llm.client import ChatClient
from factory.llm.embeddings import MiniLMEmbedder
from factory.llm.keys import ApiKeys
from factory.llm.spec import EndpointSpec
from factory.recipes.critics import CriticsConfig
from factory.recipes.generation import GenerationConfig
from factory.records import DialogueRecord, GenerationMeta, Turn
from tests.conftest import subprocess_env
from tests.openai_server import ScriptedOpenAIServer
from tests.scripts import CONTRADICTION_MARK, TOXIC_MARK, DialogueScript
from tests.unit.test_experts import BAKER, NURSE

# the experts' unit-test personas; the baker also has a dog, for the grounding critic to find
BAKER = BAKER.model_copy(update={"statements": [*BAKER.statements, "I have a dog."]})


def _dialogue(id_: str, *lines: str) -> DialogueRecord:
    speakers = [NURSE, BAKER]
    return DialogueRecord(
        id=id_,
        recipe="t",
        speakers=speakers,
        turns=[Turn(speaker=speakers[n % 2].id, text=text) for n, text in enumerate(lines)],
        generation=GenerationMeta(model="m", prompt_hash="h", seed=5),
    )


DIALOGUES = [
    _dialogue(
        "good",
        "Another night shift on the hospital ward as a nurse.",
        "I was up early to bake bread for the market.",
        "My tomatoes need water after the shift.",
        "Bring some to the market, my dog loves tomatoes!",
    ),
    _dialogue("contradicts", "Long night at work.", "My dog is asleep.", f"{CONTRADICTION_MARK}.", "Odd thing to say."),
    _dialogue("toxic", "Hello there.", f"Honestly, {TOXIC_MARK}.", "That is rude.", "Sorry."),
    _dialogue("short", "Hi."),
]
STEPS = [
    HeuristicCritic,
    GroundingCritic,
    FaithfulnessCritic,
    APCCritic,
    ToxicityCritic,
    PortrayalCritic,
    AttributionCritic,
]


def _row(record: DialogueRecord) -> dict:
    return {
        "id": record.id,
        "seed": record.generation.seed,
        "personas": [p.model_dump(mode="json") for p in record.speakers],
        "conversation": conversation_of(record),
    }


@pytest.fixture(scope="module")
def server():
    with ScriptedOpenAIServer(DialogueScript()) as scripted:
        yield scripted


@pytest.fixture(scope="module")
def minilm():
    return MiniLMEmbedder()


def _engine_verdicts(critic: str, base_url: str, embedder) -> list[dict]:
    spec = EndpointSpec(base_urls=(base_url,), model="scripted-model", max_retries=0)
    config = getattr(CriticsConfig.model_validate({critic: {"enabled": True}}), critic)

    async def judge_all() -> list[dict]:
        client = ChatClient(spec, ApiKeys({}))
        context = JudgeContext(
            client, GenerationConfig(min_turns=2, max_turns=1000), judge_model=spec.model, embedder=embedder
        )
        try:
            verdicts = await asyncio.gather(*(verdict_of(critic, record, config, context) for record in DIALOGUES))
        finally:
            await client.aclose()
        return [verdict.model_dump(mode="json") for verdict in verdicts]

    return asyncio.run(judge_all())


@pytest.mark.parametrize("step_class", STEPS, ids=[step.critic for step in STEPS])
def test_each_critic_step_gives_the_engines_verdict(server, minilm, step_class):
    expected = _engine_verdicts(step_class.critic, server.base_url, minilm)
    llm = OpenAILLM(base_url=server.base_url, api_key="unused", model="scripted-model")
    step = step_class(llm=llm) if issubclass(step_class, LLMCriticStep) else step_class()
    step.load()
    try:
        rows = next(step.process_applying_mappings([_row(record) for record in DIALOGUES]))
    finally:
        step.unload()
    assert [row["verdicts"] for row in rows] == [[verdict] for verdict in expected]
    assert any(verdict["passed"] for verdict in expected) or step_class.critic in ("toxicity",)


def test_the_readmes_example_judges_a_foreign_chat_dataset_in_a_pipeline(tmp_path, server, project_root):
    """The README's example as a user runs it: a script of its own, against a judge endpoint."""
    readme = (project_root / "README.md").read_text(encoding="utf-8")
    example = readme.split("<!-- distilabel-example -->")[1].split("<!-- /distilabel-example -->")[0]
    script = tmp_path / "judge_chats.py"
    script.write_text(example.split("```python", 1)[1].rsplit("```", 1)[0], encoding="utf-8")
    calls = server.chat_calls
    finished = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=subprocess_env(JUDGE_BASE_URL=server.base_url, JUDGE_MODEL="scripted-model"),
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    verdicts = ast.literal_eval(finished.stdout.strip().splitlines()[-1])
    assert [(critic, passed) for critic, passed, _ in verdicts] == [("heuristic", True), ("faithfulness", True)]
    assert server.chat_calls == calls + 1  # one judge call, the heuristic asked nothing


def test_every_version_carries_a_pipeline_yaml_that_distilabel_reruns(tmp_path, server):
    """`distilabel pipeline info` and `run --config` on a version's pipeline.yaml, as a user would."""
    import pyarrow.parquet as pq
    from distilabel.pipeline import Pipeline

    from factory.recipes import apply_overrides, load_recipe
    from factory.run import run_recipe
    from tests.recipes import small_recipe, write_recipe

    path = write_recipe(tmp_path, small_recipe(dialogues=8, ray={"enabled": False}))
    out = tmp_path / "out"
    run_recipe(apply_overrides(load_recipe(path), base_url=server.base_url), out, recipe_text=path.read_text())
    pipeline_file = out / "pipeline.yaml"
    assert Pipeline.from_yaml(pipeline_file).name == "e2e"
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## Reproduce with distilabel" in card and "- distilabel" in card.split("---")[1]
    assert "What the seed reproduces" in card and "reply cache repeats every reply" in card
    accepted = {row["id"] for p in (out / "data").glob("accepted-*.parquet") for row in pq.read_table(p).to_pylist()}
    assert accepted, "the scripted run accepts some dialogues"

    env = subprocess_env(DISTILABEL_CACHE_DIR=str(tmp_path / "distilabel"))
    distilabel = [sys.executable, "-m", "distilabel", "pipeline"]
    info = subprocess.run(
        [*distilabel, "info", "--config", str(pipeline_file)], capture_output=True, text=True, env=env, timeout=300
    )
    assert info.returncode == 0, info.stderr[-2000:]
    rerun = subprocess.run(
        [*distilabel, "run", "--config", str(pipeline_file), "--param", f"generate_dialogues.base_url={server.base_url}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    outputs = list((tmp_path / "distilabel").rglob("*.parquet"))
    rows = [row for p in outputs for row in pq.read_table(p).to_pylist()]
    assert len(rows) == 8
    assert {row["id"] for row in rows if row["accepted"]} == accepted


def test_the_pipeline_file_is_the_pipeline_distilabel_builds(tmp_path, project_root):
    """The run writes pipeline.yaml without importing distilabel; distilabel must read it back as
    the very pipeline it builds itself."""
    from distilabel.pipeline import Pipeline

    from factory.dataset.pipeline_file import pipeline_yaml
    from factory.distilabel.engine import build_pipeline

    recipe_text = (project_root / "pipelines" / "quickstart.yaml").read_text(encoding="utf-8")
    written = tmp_path / "pipeline.yaml"
    written.write_text(pipeline_yaml(recipe_text, "quickstart"), encoding="utf-8")
    assert Pipeline.from_yaml(written).dump() == build_pipeline(recipe_text, "quickstart").dump()


STEPS_SCRIPT = """
import json, sys
from distilabel.models import OpenAILLM
from factory.distilabel.engine import build_pipeline

recipe_path, base_url, out, where = sys.argv[1:5]
llm = OpenAILLM(base_url=base_url, model="scripted-model", api_key="unused")
pipeline = build_pipeline(open(recipe_path).read(), "e2e-steps", mode="steps", llm=llm)
if __name__ == "__main__":
    distiset = (pipeline.ray() if where == "ray" else pipeline).run(use_cache=False)
    rows = [dict(row) for row in distiset["default"]["train"]]
    open(out, "w").write(json.dumps(rows, default=str))
"""


BEST_OF_TWO = {"generation": {"candidates": 2}, "critics": {"quality": {"enabled": True}}}


@pytest.mark.parametrize(
    ("where", "overrides"),
    [("local", {}), ("local", BEST_OF_TWO), pytest.param("ray", {}, marks=pytest.mark.ray)],
    ids=["local", "best-of-two", "ray"],
)
def test_steps_mode_gives_the_engines_dialogues_for_the_same_seed(tmp_path, server, where, overrides):
    """The recipe as distilabel steps (casts, writer, each critic, accept) against a CLI run of it."""
    import json

    import pyarrow.parquet as pq

    from factory.recipes import apply_overrides, load_recipe
    from factory.run import run_recipe
    from tests.recipes import small_recipe, write_recipe

    recipe = small_recipe(dialogues=8, ray={"enabled": False}, **overrides)
    path = write_recipe(tmp_path, recipe)
    out = tmp_path / "out"
    run_recipe(apply_overrides(load_recipe(path), base_url=server.base_url), out, recipe_text=path.read_text())
    engine = {
        row["id"]: row
        for split in ("accepted", "rejected")
        for p in (out / "data").glob(f"{split}-*.parquet")
        for row in pq.read_table(p).to_pylist()
    }

    script = tmp_path / "steps.py"
    script.write_text(STEPS_SCRIPT, encoding="utf-8")
    rows_file = tmp_path / "rows.json"
    env = subprocess_env(DISTILABEL_CACHE_DIR=str(tmp_path / "distilabel"))
    finished = subprocess.run(
        [sys.executable, str(script), str(path), server.base_url, str(rows_file), where],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    steps = {row["id"]: row for row in json.loads(rows_file.read_text())}
    planned = 8 * recipe["generation"].get("candidates", 1)
    assert set(steps) == set(engine) and len(steps) == planned
    for id_, row in steps.items():
        mine = engine[id_]
        assert row["prompt_hash"] == mine["generation"]["prompt_hash"]
        assert [m["content"] for m in row["conversation"]] == [turn["text"] for turn in mine["turns"]]
        assert row["verdicts"] == mine["verdicts"]
        assert row["accepted"] == mine["accepted"]
    assert any(row["accepted"] for row in steps.values()) and not all(row["accepted"] for row in steps.values())
    # an accepted dialogue is the chat example the version's messages config holds, in either mode
    chats = {
        row["id"]: row["messages"]
        for p in (out / "data").glob("messages-*.parquet")
        for row in pq.read_table(p).to_pylist()
    }
    assert chats and all(row["messages"] == (chats[id_] if row["accepted"] else []) for id_, row in steps.items())
    if overrides:
        assert any(v["critic"] == "quality" for row in steps.values() for v in row["verdicts"])
