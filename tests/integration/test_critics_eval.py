"""`persona-factory critics eval` on small labelled fixtures, with every figure worked out by hand
from what the scripted judges answer."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from factory.critics.evaluate import auroc, spearman
from tests.conftest import subprocess_env
from tests.scripts import CONTRADICTION_MARK, TOXIC_MARK, UNPARSABLE_MARK


def run_eval(*args: str):
    return subprocess.run(
        [sys.executable, "-m", "factory.cli", "critics", "eval", *args, "--no-progress"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )


def write_spc(path):
    rows = [
        (
            ["I have a dog.", "I like tea."],
            ["I am a pilot.", "I love rain."],
            [
                "User 1: 1 Hello there, how was your day?",
                "User 2: 2 Hi. It was long but good.",
                f"User 1: 3 {CONTRADICTION_MARK}.",
                "User 2: 4 Odd, you told me about your dog.",
            ],
        ),
        (
            ["I cook pasta.", "I live alone."],
            ["I run daily.", "I have twins."],
            [
                "User 1: 1 Want to have dinner tonight?",
                "User 2: 2 After my run, sure.",
                "User 1: 3 Pasta then, I will cook.",
                "User 2: 4 Great, see you at eight.",
            ],
        ),
        (
            ["I paint.", "I am retired."],
            ["I study law.", "I hate mornings."],
            [
                "User 1: 1 Good morning to you!",
                "User 2: 2 Ugh, mornings are the worst.",
                "User 1: 3 Some coffee, maybe?",
                "User 2: 4 Please, a big one.",
            ],
        ),
    ]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user 1 personas", "user 2 personas", "Best Generated Conversation"])
        for first, second, lines in rows:
            writer.writerow(["\n".join(first), "\n".join(second), "\n".join(lines)])


def test_originals_versus_swapped_and_shuffled(tmp_path, scripted_server):
    data = tmp_path / "spc.csv"
    write_spc(data)
    report_path = tmp_path / "report.json"
    result = run_eval(
        str(data),
        "--experts",
        "faithfulness,quality",
        "--count",
        "3",
        "--out",
        str(report_path),
        "--base-url",
        scripted_server.base_url,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(report_path.read_text())
    figures = {f["expert"]: f for f in report["experts"]}
    # The scripted judge flags only the line with the contradiction mark, whoever's persona is shown:
    # originals pass, pass, fail; swapped copies pass, pass, fail -> 3 of 6 right.
    assert figures["faithfulness"]["examples"] == 6
    assert figures["faithfulness"]["accuracy"] == 0.5
    # scores 1/1/0 for faithful and 1/1/0 for unfaithful: AUROC (4 + 0.5) / 9
    assert figures["faithfulness"]["auroc"] == pytest.approx(0.5)
    # the scripted comparison prefers lines numbered in order: every original beats its shuffle
    assert figures["quality"]["accuracy"] == 1.0 and figures["quality"]["examples"] == 3
    assert report["model"] == "scripted-model" and report["dialogues"] == 6 and report["pairs"] == 3
    table = result.stdout.splitlines()
    assert table[1].split()[:5] == ["faithfulness", "6", "6", "0.50", "0.50"]
    assert table[-1] == str(report_path)


def test_rated_jsonl_agreement_with_human_labels(tmp_path, scripted_server):
    items = [
        ({"faithful": True, "rating": 5}, "We went sailing."),
        ({"faithful": True, "rating": 4}, "I made soup."),
        ({"faithful": False, "rating": 1}, f"{CONTRADICTION_MARK}!"),
        ({"faithful": False, "rating": 2}, "My dog barked."),  # unfaithful, but the judge will miss it
    ]
    path = tmp_path / "rated.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "personas": [["I sail."], ["I cook."]],
                    "turns": [{"speaker": 1, "text": text}, {"speaker": 2, "text": "Nice."}],
                    **labels,
                }
            )
            + "\n"
            for labels, text in items
        )
    )
    report_path = tmp_path / "report.json"
    result = run_eval(
        str(path), "--experts", "faithfulness", "--out", str(report_path), "--base-url", scripted_server.base_url
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figure = json.loads(report_path.read_text())["experts"][0]
    assert figure["accuracy"] == 0.75  # passes 1, 2 and 4; fails 3
    # scores 1, 1, 0, 1 against ratings 5, 4, 1, 2: ranks (3, 3, 1, 3) vs (4, 3, 1, 2)
    assert figure["spearman"] == pytest.approx(spearman([1, 1, 0, 1], [5, 4, 1, 2]))
    assert figure["spearman"] == pytest.approx(0.7745967, abs=1e-6)


def test_metric_helpers_by_hand():
    assert auroc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert auroc([1.0], [True]) is None
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_a_bad_rated_file_names_row_and_field(tmp_path):
    path = tmp_path / "rated.jsonl"
    path.write_text(
        json.dumps({"personas": [["I sail."], ["I cook."]], "turns": [{"speaker": 3, "text": "Hi"}]}) + "\n"
    )
    result = run_eval(str(path), "--experts", "faithfulness", "--base-url", "http://127.0.0.1:9/v1")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {path}, row 1, field 'turns[0]': a turn is {{speaker: 1..2, text: string}}"


def test_an_eval_report_goes_into_the_dataset_card(tmp_path, scripted_server):
    from factory.critics.report import load_critic_report
    from factory.dataset.card import CardContext, render_card
    from factory.dataset.stats import StatsAccumulator
    from factory.errors import RecipeError
    from factory.recipes import parse_recipe
    from tests.recipes import small_recipe

    data = tmp_path / "spc.csv"
    write_spc(data)
    report_path = tmp_path / "critics.json"
    assert (
        run_eval(
            str(data),
            "--experts",
            "faithfulness",
            "--count",
            "3",
            "--out",
            str(report_path),
            "--base-url",
            scripted_server.base_url,
        ).returncode
        == 0
    )
    recipe = parse_recipe(small_recipe(critics={"report": "critics.json"}), path=tmp_path / "recipe.yaml")
    report = load_critic_report(recipe.critics.report, recipe.resolve_path)
    context = CardContext(
        recipe_name="r",
        description="",
        version="v1.0.0",
        previous_version=None,
        recipe_hash="h",
        model="m",
        endpoint_kind="openai-compatible",
        license="cc-by-4.0",
        pretty_name=None,
        samples=0,
        critic_report=report,
    )
    card = str(render_card(context, StatsAccumulator().result(), [], splits=[], info={}))
    assert "## How far to trust these critics" in card
    assert "| faithfulness | `scripted-model` | 6 | 0.50 | 0.50 | faithful vs persona-swapped |" in card
    missing = parse_recipe(small_recipe(critics={"report": "nowhere.json"}), path=tmp_path / "recipe.yaml")
    with pytest.raises(RecipeError, match="cannot read the critics report") as error:
        load_critic_report(missing.critics.report, missing.resolve_path)
    assert error.value.field == "critics.report"


def write_rated(path, items):
    path.write_text(
        "".join(
            json.dumps(
                {
                    "personas": [["I sail."], ["I cook."]],
                    "turns": [{"speaker": 1, "text": text}, {"speaker": 2, "text": "Nice."}],
                    **labels,
                }
            )
            + "\n"
            for labels, text in items
        )
    )
    return path


def test_each_critic_is_scored_against_its_own_label(tmp_path, scripted_server):
    path = write_rated(
        tmp_path / "rated.jsonl",
        [
            ({"faithful": True, "toxic": False}, "We went sailing."),
            ({"faithful": True, "toxic": True}, f"Sailing? {TOXIC_MARK}."),  # faithful, but toxic
            ({"faithful": False, "toxic": False}, f"{CONTRADICTION_MARK}."),
            ({"faithful": False, "toxic": False}, "I hate boats."),
        ],
    )
    report_path = tmp_path / "report.json"
    per_item = tmp_path / "items.jsonl"
    result = run_eval(
        str(path),
        "--experts",
        "faithfulness,toxicity",
        "--out",
        str(report_path),
        "--per-item",
        str(per_item),
        "--base-url",
        scripted_server.base_url,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = {f["expert"]: f for f in json.loads(report_path.read_text())["experts"]}
    assert figures["toxicity"]["measure"] == "'toxic' labels" and figures["toxicity"]["accuracy"] == 1.0
    assert figures["faithfulness"]["measure"] == "'faithful' labels" and figures["faithfulness"]["accuracy"] == 0.75
    rows = [json.loads(line) for line in per_item.read_text().splitlines()]
    assert len(rows) == 8
    missed = [r for r in rows if r["expert"] == "faithfulness" and r["passed"] != r["should_pass"]]
    assert [r["id"] for r in missed] == ["rated-r4"] and missed[0]["labels"] == {"faithful": False, "toxic": False}


def test_unanswered_judge_calls_are_counted_apart_and_most_unanswered_fails(tmp_path, scripted_server):
    few = write_rated(
        tmp_path / "few.jsonl",
        [
            ({"faithful": True}, "We went sailing."),
            ({"faithful": False}, f"{CONTRADICTION_MARK}."),
            ({"faithful": True}, "I made soup."),
            ({"faithful": True}, f"Hm, {UNPARSABLE_MARK}."),
        ],
    )
    report_path = tmp_path / "report.json"
    result = run_eval(
        str(few), "--experts", "faithfulness", "--out", str(report_path), "--base-url", scripted_server.base_url
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figure = json.loads(report_path.read_text())["experts"][0]
    assert (figure["answered"], figure["unanswered"], figure["accuracy"]) == (3, 1, 1.0)  # scored on the answered three

    most = write_rated(
        tmp_path / "most.jsonl",
        [({"faithful": True}, f"{UNPARSABLE_MARK} {n}") for n in range(3)] + [({"faithful": True}, "Hi.")],
    )
    failed = run_eval(str(most), "--experts", "faithfulness", "--base-url", scripted_server.base_url)
    assert failed.returncode == 1
    assert failed.stderr.strip().startswith("error: faithfulness: the judge left 3 of 4 items unanswered")
    assert len(failed.stderr.strip().splitlines()) == 1


def test_what_the_data_cannot_measure_is_refused_and_quality_takes_rated_pairs(tmp_path, scripted_server):
    path = write_rated(
        tmp_path / "rated.jsonl",
        [
            ({"faithful": True, "rating": 5}, "We went sailing."),
            ({"faithful": True, "rating": 2}, "I made soup."),
            ({"faithful": False, "rating": 1}, "I hate boats."),
        ],
    )
    refused = run_eval(str(path), "--experts", "portrayal", "--base-url", scripted_server.base_url)
    assert refused.returncode == 2 and "portrayal cannot be measured" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    unlabelled = write_rated(tmp_path / "plain.jsonl", [({}, "We went sailing."), ({}, "I made soup.")])
    refused = run_eval(str(unlabelled), "--experts", "toxicity", "--base-url", scripted_server.base_url)
    assert refused.returncode == 2 and "no item has a 'toxic' label or a rating" in refused.stderr
    report_path = tmp_path / "report.json"
    rated = run_eval(
        str(path), "--experts", "quality", "--out", str(report_path), "--base-url", scripted_server.base_url
    )
    assert rated.returncode == 0, rated.stderr[-2000:]
    figure = json.loads(report_path.read_text())["experts"][0]
    assert figure["measure"] == "higher- vs lower-rated pairs" and figure["examples"] == 3 and figure["answered"] == 3


def test_the_heuristic_alone_needs_no_model(tmp_path):
    data = tmp_path / "spc.csv"
    write_spc(data)
    report_path = tmp_path / "report.json"
    result = run_eval(str(data), "--experts", "heuristic", "--count", "3", "--out", str(report_path))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert report["endpoint_kind"] is None and report["model"] is None  # no endpoint, embedded or other, was opened
    figure = report["experts"][0]
    assert (
        figure["measure"] == "pass rate on SPC originals (without placeholders)"
        and figure["examples"] == 6
        and figure["accuracy"] == 1.0
    )
