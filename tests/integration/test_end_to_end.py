"""The whole path through local Ray against the scripted endpoint: every verdict is known."""

from __future__ import annotations

import json

import datasets
import pytest
import yaml

from factory.recipes import apply_overrides, load_recipe
from factory.run import run_recipe
from tests import scripts
from tests.recipes import small_recipe, write_recipe

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def expected_failure(raw_generation: str) -> str | None:
    """Which critic must reject a dialogue, from what the scripted generator wrote."""
    if raw_generation == scripts.UNPARSABLE_REPLY:
        return "format"
    if "Sorry, I got distracted" in raw_generation:
        return "heuristic"
    if scripts.CONTRADICTION_MARK in raw_generation:
        return "faithfulness"
    return None


def card_metadata(folder) -> dict:
    text = (folder / "README.md").read_text(encoding="utf-8")
    return yaml.safe_load(text.split("---")[1])


def test_run_writes_a_loadable_versioned_dataset_with_every_verdict(tmp_path, scripted_server):
    recipe_path = write_recipe(tmp_path, small_recipe(dialogues=12))
    recipe = apply_overrides(load_recipe(recipe_path), base_url=scripted_server.base_url)
    out = tmp_path / "out"

    result = run_recipe(recipe, out, recipe_text=recipe_path.read_text(), show_progress=False)

    assert result.version == "v1.0.0"
    dataset = datasets.load_dataset(str(out))
    rows = [row for split in dataset.values() for row in split]
    assert len(rows) == 12
    outcomes = {expected_failure(row["raw_generation"]) for row in rows}
    assert {None, "format", "heuristic", "faithfulness"} <= outcomes, "the script should produce every outcome"

    # The cascade: a hard gate's failure stops the experts after it.
    verdicts_expected = {
        "format": ["format"],
        "heuristic": ["format", "heuristic"],
        "faithfulness": ["format", "heuristic", "faithfulness"],
        None: ["format", "heuristic", "faithfulness"],
    }
    for split, split_rows in dataset.items():
        for row in split_rows:
            critics = [verdict["critic"] for verdict in row["verdicts"]]
            failing = expected_failure(row["raw_generation"])
            assert critics == verdicts_expected[failing]
            failed = [verdict["critic"] for verdict in row["verdicts"] if not verdict["passed"]]
            if failing is None:
                assert split == "accepted" and row["accepted"] and failed == []
                assert len(row["turns"]) == 6
                assert [turn["speaker"] for turn in row["turns"][:2]] == [s["id"] for s in row["speakers"]]
            else:
                assert split == "rejected" and not row["accepted"]
                assert failing in failed
                reason = next(v["reason"] for v in row["verdicts"] if v["critic"] == failing)
                if failing == "format":
                    assert "unparsable reply" in reason
                if failing == "heuristic":
                    assert "same speaker" in reason
                if failing == "faithfulness":
                    assert "User 1 contradicts the profile" in reason
                    assert failed == ["faithfulness"]

    # the card's numbers are the data's numbers
    meta = card_metadata(out)["persona_factory"]
    stats = meta["stats"]
    accepted = len(dataset["accepted"]) if "accepted" in dataset else 0
    assert stats["generated"] == 12
    assert stats["accepted"] == accepted
    assert stats["rejected"] == 12 - accepted
    judged = {"format": 12}
    judged["heuristic"] = sum(1 for row in rows if expected_failure(row["raw_generation"]) != "format")
    judged["faithfulness"] = sum(1 for row in rows if expected_failure(row["raw_generation"]) in (None, "faithfulness"))
    for critic in stats["critics"]:
        passed = sum(
            1
            for row in rows
            for verdict in row["verdicts"]
            if verdict["critic"] == critic["critic"] and verdict["passed"]
        )
        assert critic["passed"] == passed
        assert critic["judged"] == judged[critic["critic"]]
    generation_tokens = sum(
        row["generation"]["usage"]["prompt_tokens"] + row["generation"]["usage"]["completion_tokens"] for row in rows
    )
    assert stats["generation_tokens"] == generation_tokens > 0
    body = (out / "README.md").read_text()
    assert f"| 12 | {accepted} | {12 - accepted} |" in body
    assert meta["version"] == "v1.0.0" and meta["model"] == "scripted-model"

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["version"] == "v1.0.0"
    assert set(manifest["ray"]["nodes_by_step"]) == {"generate", "heuristic", "faithfulness"}
    assert (out / "recipe.yaml").read_text() == recipe_path.read_text()
    # one generation call per dialogue, one judge call per dialogue that passed the gates before it
    assert scripted_server.chat_calls == 12 + judged["faithfulness"]

    # a second run is the next version; the first stays reachable by its tag
    second = run_recipe(recipe, out, recipe_text=recipe_path.read_text(), show_progress=False)
    assert (second.version, second.previous_version) == ("v1.1.0", "v1.0.0")
    assert json.loads((out / "manifest.json").read_text())["previous_version"] == "v1.0.0"
    from factory.dataset.folder import DatasetFolder

    assert DatasetFolder(out).versions() == ["v1.0.0", "v1.1.0"]
    manifest = DatasetFolder(out).read_manifest("v1.0.0")
    assert manifest is not None and manifest.version == "v1.0.0"


def test_the_card_lists_critics_not_reached_and_says_how_to_load_the_folder(tmp_path, scripted_server, monkeypatch):
    from factory.errors import RecipeError

    scripted_server.script = lambda request: "User 1: Hi.\nUser 2: Hello."  # two turns: the heuristic rejects them all
    monkeypatch.chdir(tmp_path)
    recipe = apply_overrides(
        load_recipe(write_recipe(tmp_path, small_recipe(dialogues=4, ray={"enabled": False}))),
        base_url=scripted_server.base_url,
    )
    result = run_recipe(recipe, "out", show_progress=False)
    assert result.stats.accepted == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| faithfulness | - | 0 | 0 | not reached | 0 | 0 |" in card
    assert "| 4 | 0 | 4 | 0% | n/a |" in card  # no mean turns of nothing
    assert "ds = datasets.load_dataset('out')" in card and "PATH_OR_REPO" not in card
    assert datasets.load_dataset("out")["rejected"].num_rows == 4  # the snippet works as written

    (tmp_path / "not-a-report.json").write_text(json.dumps({"hello": "world"}))
    with pytest.raises(RecipeError, match="is not a `persona-factory critics eval` report") as error:
        run_recipe(
            apply_overrides(
                load_recipe(write_recipe(tmp_path, small_recipe(critics={"report": "not-a-report.json"}))),
                base_url=scripted_server.base_url,
            ),
            "out",
            show_progress=False,
        )
    assert error.value.field == "critics.report"
