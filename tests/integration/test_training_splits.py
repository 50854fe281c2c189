"""Training-ready output for the one-call mode: the ``messages`` config once per speaker or once per
dialogue, and persona-disjoint train and test splits that ``load_dataset`` reads by name."""

from __future__ import annotations

import datasets
import pytest
import yaml

from factory.recipes import apply_overrides, load_recipe
from factory.run import run_recipe
from tests.recipes import small_recipe, write_recipe

pytestmark = pytest.mark.slow


def run(tmp_path, server, dialogues: int, **output):
    recipe = small_recipe(dialogues=dialogues, ray={"enabled": False}, output=output)
    recipe["personas"] = [{"source": "statements", "count": 12}, {"source": "mbti", "count": 8}]
    loaded = apply_overrides(load_recipe(write_recipe(tmp_path, recipe)), base_url=server.base_url)
    return run_recipe(loaded, tmp_path / "out", show_progress=False)


def accepted_dialogues(out) -> dict[str, dict]:
    return {row["id"]: row for row in datasets.load_dataset(str(out), split="accepted")}


@pytest.mark.parametrize("speakers", ["all", "first"])
def test_one_call_dialogues_are_chat_rows_with_each_speakers_persona_as_the_system_prompt(
    tmp_path, scripted_server, speakers
):
    run(tmp_path, scripted_server, 8, messages={"speakers": speakers})

    dialogues = accepted_dialogues(tmp_path / "out")
    chats = list(datasets.load_dataset(str(tmp_path / "out"), "messages", split="train"))
    assert dialogues and len(chats) == len(dialogues) * (2 if speakers == "all" else 1)
    for chat in chats:
        dialogue = dialogues[chat["id"].split("/")[0]]
        speaker = next(s for s in dialogue["speakers"] if s["id"] == chat["persona"])
        assert chat["messages"][0]["role"] == "system"
        assert all(statement in chat["messages"][0]["content"] for statement in speaker["statements"])
        # the persona's own lines are the assistant's
        own = [t["text"] for t in dialogue["turns"] if t["speaker"] == speaker["id"]]
        said = [m["content"] for m in chat["messages"] if m["role"] == "assistant"]
        assert "\n".join(said) == "\n".join(own)
    if speakers == "first":
        assert all(chat["persona"] == dialogues[chat["id"]]["speakers"][0]["id"] for chat in chats)
    else:
        per_dialogue = {}
        for chat in chats:
            per_dialogue.setdefault(chat["id"].split("/")[0], set()).add(chat["persona"])
        assert all(len(personas) == 2 for personas in per_dialogue.values())


def test_the_splits_are_persona_disjoint_and_the_card_counts_them(tmp_path, scripted_server):
    result = run(tmp_path, scripted_server, 200, splits={"train": 0.7, "test": 0.3})

    out = tmp_path / "out"
    dialogues = accepted_dialogues(out)
    personas = {}
    for split in ("train", "test"):
        rows = list(datasets.load_dataset(str(out), "messages", split=split))
        assert rows, split
        personas[split] = {s["id"] for row in rows for s in dialogues[row["id"]]["speakers"]}
    assert not personas["train"] & personas["test"]  # reused personas, none in both
    in_splits = sum(len(datasets.load_dataset(str(out), "messages", split=split)) for split in ("train", "test"))
    card = (out / "README.md").read_text(encoding="utf-8")
    # casting pairs personas of one split, so no accepted dialogue is lost to the rule
    assert result.stats.accepted == len(dialogues) == in_splits
    assert "0 accepted dialogues whose speakers are in different splits are in neither" in card
    assert all(row["id"].split("-")[-2] in ("train", "test") for row in dialogues.values())
    metadata = yaml.safe_load(card.split("---")[1])
    messages = next(c for c in metadata["configs"] if c["config_name"] == "messages")
    assert [f["split"] for f in messages["data_files"]] == ["train", "test"]


def test_a_run_that_accepts_nothing_still_declares_its_messages_splits(tmp_path, scripted_server):
    recipe = small_recipe(
        dialogues=6, ray={"enabled": False}, output={"splits": {"train": 0.5, "test": 0.5}},
        critics={"heuristic": {"enabled": True, "echo_similarity": 0.01, "max_duplicate_turn_ratio": 0.0},
                 "faithfulness": {"enabled": True}},
    )  # fmt: skip
    loaded = apply_overrides(load_recipe(write_recipe(tmp_path, recipe)), base_url=scripted_server.base_url)
    result = run_recipe(loaded, tmp_path / "out", show_progress=False)
    assert result.stats.generated == 6 and result.stats.accepted == 0

    out = str(tmp_path / "out")
    streamed = datasets.load_dataset(out, "messages", streaming=True)
    assert sorted(streamed) == ["test", "train"] and all(list(streamed[split]) == [] for split in streamed)
    assert list(datasets.get_dataset_split_names(out, "messages")) == ["train", "test"]
    (line,) = [line for line in result.summary().splitlines() if line.startswith("messages")]
    rejected = ", ".join(f"{critic} {n}" for critic, n in result.stats.rejected_by.items())
    assert line == f"messages    no training rows were written: no dialogue was accepted (rejected by {rejected})"
    # a dialogue stopped by a gate names only the steps that judged it
    for row in datasets.load_dataset(out, split="rejected"):
        judged = {"generate", *(verdict["critic"] for verdict in row["verdicts"])}
        assert {placement["step"] for placement in row["generation"]["placements"]} <= judged
