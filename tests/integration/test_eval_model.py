"""`persona-factory eval-model`: a scripted model that stays in character against one that drifts
into its partner's facts, on the held-out personas of a version with persona-disjoint splits.
The judges' answers follow from the prompts alone (tests/eval_scripts.py), so every figure of
the report can be worked out from the transcripts the evaluation wrote."""

from __future__ import annotations

import json
import subprocess
import sys

import datasets
import pytest
import yaml

from factory.calibrate import wilson
from factory.errors import InputError
from factory.model_eval import EXPERTS, EvalModelRequest, evaluate_models, load_questions
from factory.recipes import apply_overrides, load_recipe
from factory.recipes.judges import JudgeLLMConfig
from factory.recipes.llm import LLMConfig
from factory.records import DialogueRecord
from factory.run import run_recipe
from tests.conftest import subprocess_env
from tests.eval_scripts import GUESS, drifting, in_character, judge_and_simulator, pool_rows
from tests.openai_server import ScriptedOpenAIServer
from tests.recipes import small_recipe, write_recipe
from tests.scripts import GOOD, dialogue_reply

pytestmark = pytest.mark.slow
TURNS = 4


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    """A version whose messages config has persona-disjoint train and test splits."""
    where = tmp_path_factory.mktemp("version")
    (where / "pool.jsonl").write_text("\n".join(json.dumps(row) for row in pool_rows()) + "\n", encoding="utf-8")
    recipe = small_recipe(
        dialogues=60,
        ray={"enabled": False},
        output={"messages": {"speakers": "all"}, "splits": {"train": 0.5, "test": 0.5}},
    )
    recipe["personas"] = [
        {
            "source": "hub_personas",
            "path": "pool.jsonl",
            "columns": {"persona": "bio", "statements": "statements", "mbti": "type"},
            "dedup_threshold": None,
        }
    ]
    with ScriptedOpenAIServer(lambda request: dialogue_reply(request, lambda *_: GOOD)) as server:
        loaded = apply_overrides(load_recipe(write_recipe(where, recipe)), base_url=server.base_url)
        run_recipe(loaded, where / "out", show_progress=False)
    return where / "out"


@pytest.fixture
def parties():
    with (
        ScriptedOpenAIServer(in_character, model="in-character") as kept,
        ScriptedOpenAIServer(drifting, model="drifting") as drifted,
        ScriptedOpenAIServer(judge_and_simulator, model="judge") as judge,
    ):
        yield kept, drifted, judge


def test_the_model_that_stays_in_character_scores_higher_on_every_critic(tmp_path, version, parties):
    kept, drifted, judge = parties
    test_personas = {row["persona"] for row in datasets.load_dataset(str(version), "messages", split="test")}
    train_personas = {row["persona"] for row in datasets.load_dataset(str(version), "messages", split="train")}
    assert len(test_personas) >= 4, "too few held-out personas for the intervals to part"

    result = evaluate_models(
        EvalModelRequest(
            source=str(version), out=tmp_path / "eval", turns=TURNS, show_progress=False,
            models=[LLMConfig(base_url=kept.base_url), LLMConfig(base_url=drifted.base_url)],
            judge=JudgeLLMConfig(base_url=judge.base_url), simulator=LLMConfig(base_url=judge.base_url),
        )
    )  # fmt: skip

    out = tmp_path / "eval"
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report == json.loads(json.dumps(result.report))
    transcripts = {label: load_transcripts(out, label) for label in ("a", "b")}
    # only held-out personas were played, each once per model, against the same simulator lines' start
    for records in transcripts.values():
        assert {r.speakers[1].id for r in records} == test_personas and not test_personas & train_personas
        assert all(len(r.turns) == 2 * TURNS for r in records)
    assert [r.turns[0].text for r in transcripts["a"]] == [r.turns[0].text for r in transcripts["b"]]

    expected = {label: expected_figures(records) for label, records in transcripts.items()}
    n = len(test_personas)
    assert expected["a"] == {critic: (n, n) for critic in EXPERTS}  # every verdict on the kept model passes
    for label, model in zip(("a", "b"), report["models"]):
        assert model["model"]["model"] == ("in-character" if label == "a" else "drifting")
        for critic in EXPERTS:
            passed, judged = expected[label][critic]
            figure = model["overall"][critic]
            low, high = wilson(passed, judged)
            assert (figure["passed"], figure["judged"], figure["unanswered"]) == (passed, judged, 0), (label, critic)
            assert figure["pass_rate"] == {
                "value": round(passed / judged, 4),
                "low": round(low, 4),
                "high": round(high, 4),
            }
        cells = {cell for cell in model["cells"]}
        assert cells == {f"mbti {r.speakers[1].mbti}" for r in transcripts[label]}
    for critic in EXPERTS:
        a, b = (report["models"][i]["overall"][critic]["pass_rate"]["value"] for i in (0, 1))
        assert a > b, critic
        compared = report["comparison"][critic]
        assert compared["higher"] == "a" and compared["beyond_intervals"] is True
        assert compared["difference"] == round(a - b, 4)

    card = (out / "README.md").read_text(encoding="utf-8")
    metadata = yaml.safe_load(card.split("---")[1])["persona_factory"]
    assert metadata["dataset"]["revision"] == "v1.0.0" and metadata["dataset"]["commit"]
    assert metadata["dataset"]["path"] == version.name  # an absolute path names this machine: its name only
    assert str(version) not in card and str(version) not in (out / "report.json").read_text(encoding="utf-8")
    assert metadata["models"]["a"]["model"] == "in-character" and metadata["judges"]["apc"][0]["model"] == "judge"
    a_apc = report["models"][0]["overall"]["apc"]
    assert f"| a | apc | 1.00 [{a_apc['pass_rate']['low']:.2f}, 1.00] ({n}/{n}) |" in card
    assert "apc: a (in-character) passes more often than b (drifting) by 1.00, beyond the intervals" in card
    assert len(datasets.load_dataset(str(out), split="b")) == n


def load_transcripts(out, label) -> list[DialogueRecord]:
    return [DialogueRecord.model_validate(row) for row in datasets.load_dataset(str(out), split=label)]


def expected_figures(records: list[DialogueRecord]) -> dict[str, tuple[int, int]]:
    """(passed, judged) per critic, from what the scripted judges must have answered: the kept model
    says its own statements (APC 1.0, nothing contradicted, every line its persona's, its type shown);
    the drifting one says its partner's (APC 0.0, a contradiction, every line the partner's, no type
    shown, so the judge's guess decides portrayal)."""
    figures = {critic: [0, 0] for critic in EXPERTS}
    for record in records:
        played = record.speakers[1]
        kept = record.generation.model == "in-character"
        guessed = sum(a == b for a, b in zip(played.mbti, GUESS))
        for critic, passed in (
            ("apc", kept),
            ("faithfulness", kept),
            ("attribution", kept),
            ("portrayal", kept or 4 - guessed <= 1),
        ):
            figures[critic][0] += passed
            figures[critic][1] += 1
    return {critic: (passed, judged) for critic, (passed, judged) in figures.items()}


def cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "factory.cli", "eval-model", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_eval_model_on_the_command_line_prints_the_figures_and_refuses_what_it_cannot_do(tmp_path, version, parties):
    kept, drifted, judge = parties
    common = ["--base-url", kept.base_url, "--judge-base-url", judge.base_url, "--no-progress", "--turns", "2"]

    done = cli(str(version), "--out", str(tmp_path / "eval"), "--compare-base-url", drifted.base_url, *common)
    assert done.returncode == 0, done.stderr
    assert "a      apc" in done.stdout and "b      apc" in done.stdout
    assert (
        "attribution: a (in-character) passes more often than b (drifting) by 1.00, beyond the intervals" in done.stdout
    )
    assert done.stdout.strip().endswith(str(tmp_path / "eval"))

    again = cli(str(version), "--out", str(tmp_path / "eval"), *common)
    assert again.returncode == 2 and "exists and is not empty" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    no_file = cli(str(version), "--out", str(tmp_path / "other"), "--questions", str(tmp_path / "none.txt"), *common)
    assert no_file.returncode == 2 and "none.txt: no such file" in no_file.stderr
    no_split = cli(str(version), "--out", str(tmp_path / "other"), "--split", "validation", *common)
    assert no_split.returncode == 2 and "no messages validation split" in no_split.stderr
    assert not (tmp_path / "other").exists()


def test_a_version_on_the_hub_is_evaluated_at_its_revision(tmp_path, version, parties, monkeypatch):
    import huggingface_hub.constants

    from tests.hub import HubServer

    kept, _drifted, judge = parties
    with HubServer(token="hf_eval_token_3c1d") as hub:
        env = {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": "hf_eval_token_3c1d", "HF_HOME": str(tmp_path / "hf-home")}
        pushed = subprocess.run(
            [sys.executable, "-m", "factory.cli", "push", str(version), "--repo", "org/pool"],
            capture_output=True, text=True, timeout=300, env={**subprocess_env(), **env, "HF_HUB_OFFLINE": "0"},
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)

        result = evaluate_models(
            EvalModelRequest(
                source="hf://org/pool", revision="refs/pr/1", out=tmp_path / "eval", turns=2, show_progress=False,
                models=[LLMConfig(base_url=kept.base_url)], judge=JudgeLLMConfig(base_url=judge.base_url),
            )
        )  # fmt: skip

        head = hub.repos["org/pool"].pulls[1].head
    assert result.report["dataset"] == {"repo": "org/pool", "revision": "refs/pr/1", "commit": head}
    local = {row["persona"] for row in datasets.load_dataset(str(version), "messages", split="test")}
    assert {r.speakers[1].id for r in load_transcripts(tmp_path / "eval", "a")} == local
    assert "comparison" not in result.report
    written = [path for path in (tmp_path / "eval").rglob("*") if path.is_file()]
    assert written and not any(b"hf_eval_token_3c1d" in path.read_bytes() for path in written)


def test_fixed_questions_replace_the_simulator_for_every_persona_and_model(tmp_path, version, parties):
    kept, drifted, judge = parties
    questions = ("Where do you live?", "What is your job?", "Do you have a pet?")
    (tmp_path / "questions.txt").write_text("\n".join(questions) + "\n\n", encoding="utf-8")

    result = evaluate_models(
        EvalModelRequest(
            source=str(version), out=tmp_path / "eval", turns=3, show_progress=False,
            models=[LLMConfig(base_url=kept.base_url), LLMConfig(base_url=drifted.base_url)],
            judge=JudgeLLMConfig(base_url=judge.base_url), questions=load_questions(str(tmp_path / "questions.txt")),
        )
    )  # fmt: skip

    for label in ("a", "b"):
        for record in load_transcripts(tmp_path / "eval", label):
            assert [turn.text for turn in record.turns[0::2]] == list(questions)
    assert not any(r["messages"][0]["content"].startswith("You are engaging") for r in judge.requests)
    assert result.report["interlocutor"] == "3 fixed questions"
    assert "with the 3 fixed questions." in (tmp_path / "eval" / "README.md").read_text(encoding="utf-8")
    # the drifter echoes a question, not a fact of its own: nothing to contradict, nothing entailed
    assert result.report["comparison"]["attribution"]["higher"] == "a"
    assert load_questions("builtin")[0] == "Tell me a little about yourself."
    with pytest.raises(InputError, match="holds no question"):
        (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
        load_questions(str(tmp_path / "empty.txt"))


def test_a_critic_whose_judge_answers_nothing_fails_the_command_after_the_figures(tmp_path, version, parties):
    kept, _drifted, _judge = parties

    def silent_faithfulness(request):
        if request["messages"][0]["content"].startswith("You are a careful annotator"):
            return "I would rather not say."
        return judge_and_simulator(request)

    with ScriptedOpenAIServer(silent_faithfulness, model="judge") as judge:
        done = cli(
            str(version), "--out", str(tmp_path / "eval"), "--base-url", kept.base_url, "--judge-base-url",
            judge.base_url, "--experts", "apc,faithfulness", "--turns", "2", "--no-progress",
        )  # fmt: skip

    assert done.returncode == 1
    assert "a      apc" in done.stdout and "a      faithfulness  not measured" in done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: faithfulness: the judge left") and "unanswered" in line
    report = json.loads((tmp_path / "eval" / "report.json").read_text(encoding="utf-8"))
    figure = report["models"][0]["overall"]["faithfulness"]
    assert figure["judged"] == 0 and figure["unanswered"] == report["personas"]
