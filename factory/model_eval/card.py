"""The evaluation folder: ``report.json``, each model's conversations with their verdicts as a
split of parquet shards, and a dataset card that says what was evaluated, on what, by whom, and
the figures. Written into a staging folder beside it and renamed into place, so a folder that
exists is whole."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from huggingface_hub import DatasetCard, DatasetCardData

from factory.dataset.arrow import records_to_table
from factory.errors import InputError
from factory.model_eval.report import comparison_lines, rate_text, score_text
from factory.records import DialogueRecord


def check_out(out: Path) -> None:
    """An evaluation never writes over another: the folder must not exist, or be empty."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("exists and is not empty; give a new folder to --out", path=out)


def write_evaluation(out: Path, report: dict[str, Any], transcripts: dict[str, list[DialogueRecord]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / "data").mkdir()
        for label, records in transcripts.items():
            pq.write_table(
                records_to_table(DialogueRecord, list(records)), staging / "data" / f"{label}-00000-of-00001.parquet"
            )
        (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(str(evaluation_card(report)), encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty, as check_out found it
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def evaluation_card(report: dict[str, Any]) -> DatasetCard:
    labels = [model["label"] for model in report["models"]]
    data = DatasetCardData(
        license="other",
        language=["en"],
        tags=["persona-factory", "evaluation", "persona", "role-play"],
        pretty_name=f"persona-factory evaluation of {', '.join(m['model']['model'] for m in report['models'])}",
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": label, "path": f"data/{label}-*.parquet"} for label in labels],
            }
        ],
        persona_factory={
            "kind": "model_evaluation",
            "dataset": report["dataset"],
            "models": {model["label"]: model["model"] for model in report["models"]},
            "judges": report["judges"],
            "simulator": report["simulator"],
        },
    )
    body = [*_header(report), *_overall(report), *_cells(report), *_comparison(report), *_how(report)]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")


def _header(report: dict[str, Any]) -> list[str]:
    dataset = report["dataset"]
    where = dataset.get("repo") or dataset.get("path")
    lines = [
        "# Model evaluation",
        "",
        f"Evaluated on the **{report['split']}** personas of `{where}` at **{dataset.get('revision')}** "
        f"(commit `{str(dataset.get('commit'))[:12]}`): {report['personas']} personas, {report['turns']} exchanges each "
        f"with the {report['interlocutor']}.",
        "",
        "| split | model | endpoint |",
        "|---|---|---|",
    ]
    lines += [
        f"| {m['label']} | {m['model']['model']} | {m['model']['endpoint']} ({m['model']['endpoint_kind']}) |"
        for m in report["models"]
    ]
    return [*lines, ""]


def _overall(report: dict[str, Any]) -> list[str]:
    lines = [
        "## Overall",
        "",
        "Pass rate with Wilson's 95% interval (passed/judged); mean score with Wilson's interval on the summed "
        "scores (a score in [0, 1] varies no more than a pass/fail of the same mean).",
        "",
        "| model | critic | pass rate | mean score | unanswered |",
        "|---|---|---|---|---|",
    ]
    for model in report["models"]:
        for critic, figure in model["overall"].items():
            lines.append(
                f"| {model['label']} | {critic} | {rate_text(figure)} | {score_text(figure)} | {figure['unanswered']} |"
            )
    return [*lines, ""]


def _cells(report: dict[str, Any]) -> list[str]:
    lines = ["## Per persona cell", "", "| model | cell | critic | pass rate | mean score |", "|---|---|---|---|---|"]
    for model in report["models"]:
        for cell, by_critic in model["cells"].items():
            for critic, figure in by_critic.items():
                lines.append(f"| {model['label']} | {cell} | {critic} | {rate_text(figure)} | {score_text(figure)} |")
    return [*lines, ""]


def _comparison(report: dict[str, Any]) -> list[str]:
    lines = comparison_lines(report)
    if not lines:
        return []
    return ["## Comparison", "", *(f"- {line}" for line in lines), ""]


def _how(report: dict[str, Any]) -> list[str]:
    judges = ", ".join(
        f"{critic}: {', '.join(j['model'] or '?' for j in jurors)}" for critic, jurors in report["judges"].items()
    )
    return [
        "## How it was made",
        "",
        (
            f"- The simulator ({report['simulator']['model']}) plays a partner persona with USP's user-simulator "
            "prompt and opens every exchange"
            if report["interlocutor"] == "user simulator"
            else f"- {report['interlocutor'].capitalize()} open the exchanges, the same for every persona"
        )
        + "; the model under test sees the conversation as a row of the dataset's `messages` config shows it "
        "(its persona's prompt as the system message).",
        f"- Judges: {judges}.",
        "- apc, faithfulness and portrayal judge the played persona only; attribution asks which of the "
        "played persona and its partner said the model's lines (PersonaEval's role identification).",
        f"- Seed {report['seed']}, the model's temperature {report['temperature']}.",
        "",
        "```python",
        "import datasets",
        "transcripts = datasets.load_dataset(PATH, split=" + repr(report["models"][0]["label"]) + ")",
        "```",
    ]
