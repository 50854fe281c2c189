"""The learned critic on the packaged embedding model: trained on a slice of the shipped
conversations it ranks held-out originals above persona-swapped and shuffled copies; the shipped
one judges in the cascade; its uncertain band sends only the dialogues in it to the judge."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys

import datasets
import pytest

from factory.critics.base import JudgeContext
from factory.critics.evaluate import auroc
from factory.critics.learned.corruptions import Conversation, Materials, persona_swapped, turns_shuffled
from factory.critics.learned.critic import embedder_for_critics, loaded
from factory.critics.learned.model import load_critic, part_of
from factory.critics.learned.train import spc_training_data, train_critic
from factory.engine.processor import judge
from factory.llm.keys import ApiKeys
from factory.llm.spec import EndpointSpec
from factory.llm.tasks import JsonTaskRunner
from factory.recipes.critics import CriticsConfig, LearnedCriticConfig
from factory.recipes.generation import GenerationConfig
from factory.recipes.llm import LLMConfig
from factory.records import DialogueRecord, GenerationMeta, PersonaProfile, Turn
from factory.settings import resolve_data_path
from tests.conftest import subprocess_env
from tests.openai_server import ScriptedOpenAIServer
from tests.recipes import small_recipe, write_recipe

SPC = resolve_data_path("builtin:synthetic_persona_chat", None)


def _record(id_: str, talk: Conversation) -> DialogueRecord:
    speakers = [PersonaProfile(id=f"{id_}-u{n}", kind="statements", statements=p) for n, p in enumerate(talk.profiles)]
    return DialogueRecord(
        id=id_,
        recipe="test",
        speakers=speakers,
        turns=[Turn(speaker=speakers[who].id, text=text) for who, text in talk.lines],
        generation=GenerationMeta(model="", prompt_hash="", seed=0),
    )


def test_a_critic_trained_on_a_slice_ranks_held_out_originals_above_swapped_and_shuffled_ones(tmp_path):
    data = spc_training_data(SPC)
    data.conversations = dict(sorted(data.conversations.items())[:240])
    critic = train_critic(data, embedder_for_critics(), seed=1)
    critic.save(tmp_path / "critic")
    again = load_critic(tmp_path / "critic")
    held_out = again.meta["held_out"]
    assert held_out["corruptions"]["turns_shuffled"]["auroc"] > 0.8
    assert held_out["corruptions"]["persona_swapped"]["auroc"] > 0.5
    assert again.meta["training"]["sources"][0]["sha256"] and again.threshold == critic.threshold

    # scored again from the folder, on conversations of the held-out test part it never saw
    rng = random.Random(5)
    talks = [t for i, t in data.conversations.items() if part_of(i) == "test"]
    assert len(talks) >= 20
    embedder = embedder_for_critics()
    scores, truth = [], []
    for talk in talks:
        short = Conversation(talk.profiles, talk.lines[:8])
        donor = Materials(rng.choice(talks), [])
        for good, shown in (
            (True, short),
            (False, persona_swapped(short, donor, rng)),
            (False, turns_shuffled(short, donor, rng)),
        ):
            if shown is not None:
                scores.append(float(again.probability([again.vectors(shown.profiles, shown.lines, embedder)])[0]))
                truth.append(good)
    assert auroc(scores, truth) > 0.65


def test_the_shipped_critic_judges_in_the_cascade_and_names_what_is_wrong():
    row = next(r for r in spc_training_data(SPC).conversations.values() if len(r.lines) >= 8)
    original = Conversation(row.profiles, row.lines[:8])
    broken = Conversation(
        row.profiles,
        [(w, t) for w, t in original.lines[:4]] + [(w, original.lines[0][1]) for w, _ in original.lines[4:]],
    )
    critics = CriticsConfig.model_validate(
        {"heuristic": {"enabled": False}, "faithfulness": {"enabled": False}, "learned": {"enabled": True}}
    )
    context = JudgeContext(None, GenerationConfig(min_turns=2, max_turns=100))
    with JsonTaskRunner(None, ApiKeys()) as runner:
        records = [_record("good", original), _record("bad", broken)]
        runner.gather((judge(r, critics, context) for r in records), desc="learned", show_progress=False)
    good, bad = (r.verdicts[-1] for r in records)
    assert good.critic == bad.critic == "learned"
    assert good.score > bad.score and not bad.passed
    assert "p=" in bad.reason and bad.judge.startswith("learned")


def test_the_uncertain_band_asks_the_judge_only_about_the_dialogues_in_it():
    data = spc_training_data(SPC)
    rng = random.Random(2)
    talks = [Conversation(t.profiles, t.lines[:6]) for t in list(data.conversations.values())[:10]]
    shown = talks[:5] + [turns_shuffled(t, Materials(t, []), rng) or t for t in talks[5:]]
    records = [_record(f"d{n}", talk) for n, talk in enumerate(shown)]
    critic = loaded(LearnedCriticConfig())
    embedder = embedder_for_critics()
    scores = [float(critic.probability([critic.vectors(t.profiles, t.lines, embedder)])[0]) for t in shown]
    high = sorted(scores)[len(scores) // 2]  # half above the band, half in it
    in_band = sum(0.0 <= s <= high for s in scores)
    critics = CriticsConfig.model_validate(
        {
            "heuristic": {"enabled": False},
            "learned": {"enabled": True, "uncertain_band": [0.0, high], "audit_share": 0.0},
            "faithfulness": {"enabled": True, "few_shot": False},
        }
    )
    answer = json.dumps({"reason": "no contradiction", "speaker": "none", "contradiction": False})
    with ScriptedOpenAIServer(script=lambda request: answer) as server:
        spec = EndpointSpec.of(LLMConfig(), server.base_url, "judge", "openai-compatible")
        with JsonTaskRunner(spec, ApiKeys()) as runner:
            context = JudgeContext(runner.client, GenerationConfig(min_turns=2, max_turns=100), judge_model="judge")
            runner.gather((judge(r, critics, context) for r in records), desc="band", show_progress=False)
        asked = server.chat_calls
    assert 0 < in_band < len(records)
    assert asked == in_band
    for record, score in zip(records, scores):
        faithfulness = next(v for v in record.verdicts if v.critic == "faithfulness")
        assert (faithfulness.decided_by == "learned") == (score > high)
        assert faithfulness.passed and (faithfulness.tokens == 0) == (score > high)


def test_critics_train_writes_a_folder_that_critics_eval_measures(tmp_path):
    slice_file = tmp_path / "spc.csv"
    # the first 120 conversations: a CSV row spans several lines, so cut on the parsed rows
    with SPC.open(encoding="utf-8", newline="") as source, slice_file.open("w", encoding="utf-8", newline="") as out:
        reader = csv.reader(source)
        writer = csv.writer(out)
        for number, row in enumerate(reader):
            if number > 120:
                break
            writer.writerow(row)
    folder = tmp_path / "critic"
    trained = subprocess.run(
        [sys.executable, "-m", "factory.cli", "critics", "train", "--out", str(folder), "--data", str(slice_file)],
        capture_output=True, text=True, env=subprocess_env(), timeout=900,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "held out:" in trained.stdout and "persona_swapped" in trained.stdout
    recipe = write_recipe(tmp_path, small_recipe(critics={"learned": {"enabled": True, "model": str(folder)}}))
    report = tmp_path / "report.json"
    measured = subprocess.run(
        [sys.executable, "-m", "factory.cli", "critics", "eval", str(slice_file), "--experts", "learned",
         "--recipe", str(recipe), "--count", "40", "--out", str(report), "--no-progress"],
        capture_output=True, text=True, env=subprocess_env(), timeout=900,
    )  # fmt: skip
    assert measured.returncode == 0, measured.stderr[-2000:]
    figures = json.loads(report.read_text(encoding="utf-8"))
    measures = {f["measure"]: f for f in figures["experts"] if f["expert"] == "learned"}
    assert set(measures) == {"faithful vs persona-swapped", "original vs turn-shuffled"}
    assert figures["learned_held_out"] is True  # measured on the conversations it did not learn from
    assert measures["original vs turn-shuffled"]["auroc"] > 0.7


@pytest.mark.parametrize("broken", ["missing", "garbage"])
def test_a_recipe_naming_a_broken_critic_folder_is_one_line(tmp_path, broken):
    folder = tmp_path / "critic"
    if broken == "garbage":
        folder.mkdir()
        (folder / "critic.json").write_text("[]", encoding="utf-8")
        (folder / "weights.npz").write_bytes(b"PK-not-a-zip")
    recipe = write_recipe(tmp_path, small_recipe(critics={"learned": {"enabled": True, "model": str(folder)}}))
    measured = subprocess.run(
        [sys.executable, "-m", "factory.cli", "critics", "eval", "--experts", "learned", "--recipe", str(recipe),
         "--count", "4", "--no-progress"],
        capture_output=True, text=True, env=subprocess_env(), timeout=600,
    )  # fmt: skip
    assert measured.returncode != 0
    lines = [line for line in measured.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(folder) in lines[0], measured.stderr


@pytest.mark.parametrize(
    "setting",
    [{"output": {"compare_to": "missing.csv"}}, {"critics": {"learned": {"enabled": True, "model": "no-critic-here"}}}],
)
def test_a_wrong_reference_or_critic_path_fails_before_any_call(tmp_path, scripted_server, setting):
    from factory.errors import FactoryError
    from factory.recipes import apply_overrides, load_recipe
    from factory.run import run_recipe

    recipe = apply_overrides(
        load_recipe(write_recipe(tmp_path, small_recipe(ray={"enabled": False}, **setting))),
        base_url=scripted_server.base_url,
    )
    with pytest.raises(FactoryError) as caught:
        run_recipe(recipe, tmp_path / "out", show_progress=False)
    assert ("missing.csv" in str(caught.value)) or ("no-critic-here" in str(caught.value))
    assert scripted_server.chat_calls == 0
    assert not list((tmp_path / "out").glob("v*"))


def test_the_card_measures_the_accepted_turns_against_real_conversations(tmp_path, scripted_server):
    from factory.recipes import apply_overrides, load_recipe
    from factory.run import run_recipe

    recipe = apply_overrides(
        load_recipe(
            write_recipe(
                tmp_path, small_recipe(ray={"enabled": False}, output={"compare_to": "builtin:synthetic_persona_chat"})
            )
        ),
        base_url=scripted_server.base_url,
    )
    result = run_recipe(recipe, tmp_path / "out", show_progress=False)
    assert result.stats.accepted
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    section = card.split("## How close to real conversations", 1)[1].split("\n## ", 1)[0]
    accepted_row = next(line for line in section.splitlines() if line.startswith("| accepted split"))
    real_row = next(line for line in section.splitlines() if line.startswith("| real conversations"))
    accepted_frechet, real_frechet = (float(row.split("|")[3]) for row in (accepted_row, real_row))
    # the scripted dialogues are a handful of template lines: far from real talk, and real talk is near itself
    assert accepted_frechet > real_frechet > 0


def test_reviewers_are_offered_the_dialogues_the_learned_critic_is_least_sure_of_first(tmp_path, scripted_server):
    import datasets

    from factory.calibrate import calibrate_version
    from factory.critics.learned.train import reviewed_data
    from factory.dataset.review_section import LEAST_SURE, read_state
    from factory.recipes import apply_overrides, load_recipe
    from factory.review import card_of, label_version, opened
    from factory.run import run_recipe

    recipe = apply_overrides(
        load_recipe(
            write_recipe(
                tmp_path,
                small_recipe(
                    dialogues=8, ray={"enabled": False}, critics={"learned": {"enabled": True}},
                    output={"review_samples": 2},
                ),
            )
        ),
        base_url=scripted_server.base_url,
    )  # fmt: skip
    out = tmp_path / "out"
    run_recipe(recipe, out, show_progress=False)
    target, version = opened(str(out), None)
    state = read_state(card_of(target, version))
    assert next(iter(state.samples)) == LEAST_SURE
    unsure = state.samples[LEAST_SURE]
    drawn = [i for split, ids in state.samples.items() if split != LEAST_SURE for i in ids]
    assert unsure and not set(unsure) & set(drawn)
    loaded = datasets.load_dataset(str(out))
    distance = {
        row["id"]: abs(next(v["score"] for v in row["verdicts"] if v["critic"] == "learned") - 0.5)
        for split in loaded
        for row in loaded[split]
        if any(v["critic"] == "learned" for v in row["verdicts"])
    }
    others = [d for i, d in distance.items() if i not in unsure and i not in drawn]
    assert all(distance[i] <= min(others, default=1.0) for i in unsure)
    assert state.weights()[unsure[0]] == 0.0

    for dialogue in [unsure[0], *drawn]:
        label_version(target, version, "ada", {"id": dialogue, "in_character": dialogue != unsure[0], "quality": 3})
    calibration = calibrate_version(str(out), version, 0.9)  # the chosen one weighs nothing, and breaks nothing
    assert calibration.labels == 1 + len(drawn)
    training = reviewed_data(str(out), version)
    assert unsure[0] in {i for i, _ in training.labelled}  # and it feeds `critics train`


def test_from_judge_labels_a_versions_dialogues_once_with_the_judge(tmp_path, scripted_server):
    from factory.critics.learned.train import judged_data
    from factory.recipes import apply_overrides, load_recipe
    from factory.run import run_recipe

    recipe = apply_overrides(
        load_recipe(write_recipe(tmp_path, small_recipe(dialogues=6, ray={"enabled": False}))),
        base_url=scripted_server.base_url,
    )
    out = tmp_path / "out"
    run_recipe(recipe, out, show_progress=False)
    before = scripted_server.chat_calls
    rows = [row for split in datasets.load_dataset(str(out)).values() for row in split]
    with_turns = sum(bool(row["turns"]) for row in rows)
    assert with_turns < len(rows)  # the script fails one dialogue's format: it has nothing to judge
    data = judged_data(str(out), None, with_turns, recipe.critics, recipe.llm, seed=0)
    # one faithfulness call per dialogue with turns, once; the one without is never drawn
    assert scripted_server.chat_calls - before == with_turns
    assert len(data.labelled) == with_turns and {example.kind for _, example in data.labelled} == {"judged"}
    assert data.sources[0]["labels"] == with_turns and data.sources[0]["judged"].endswith("v1.0.0")
