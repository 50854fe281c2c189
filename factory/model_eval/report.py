"""The figures of an evaluation: per critic, overall and per persona cell, the pass rate with
Wilson's 95% interval, and the mean score with a bound of the same kind; and, for two models,
whether each critic's difference lies beyond the intervals.

A verdict the judge did not answer counts apart (``unanswered``), never as a fail: it says
nothing of the model. A critic a persona gives nothing to check (portrayal, for a persona with
neither an MBTI type nor Big Five levels) is not asked, so it counts nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from factory.calibrate import wilson
from factory.records import Verdict


@dataclass(frozen=True)
class Judged:
    """One critic's verdict on one conversation, and the cell of the persona it played."""

    critic: str
    cell: str
    verdict: Verdict


def interval(value: float | None, low: float | None, high: float | None) -> dict[str, float | None]:
    return {"value": value, "low": low, "high": high}


def figures(verdicts: list[Verdict]) -> dict[str, Any]:
    """What one critic says of one model (over all personas, or one cell's)."""
    answered = [verdict for verdict in verdicts if verdict.answered and verdict.score is not None]
    figure: dict[str, Any] = {
        "judged": len(answered),
        "unanswered": len(verdicts) - len(answered),
        "first_unanswered": next((v.reason for v in verdicts if not v.answered or v.score is None), None),
        "passed": sum(verdict.passed for verdict in answered),
    }
    if not answered:
        return {**figure, "pass_rate": interval(None, None, None), "mean_score": interval(None, None, None)}
    n = len(answered)
    low, high = wilson(figure["passed"], n)
    mean = sum(float(verdict.score or 0.0) for verdict in answered) / n
    # A score in [0, 1] varies at most as a pass/fail of the same mean does, so Wilson's interval
    # on the summed scores bounds the mean, even where every score is the same.
    score_low, score_high = wilson(mean * n, n)
    return {
        **figure,
        "pass_rate": interval(round(figure["passed"] / n, 4), round(low, 4), round(high, 4)),
        "mean_score": interval(round(mean, 4), round(score_low, 4), round(score_high, 4)),
    }


def model_figures(judged: Iterable[Judged], critics: list[str]) -> dict[str, Any]:
    """Per critic overall, and per cell per critic."""
    rows = list(judged)
    cells = sorted({row.cell for row in rows})
    return {
        "overall": {critic: figures([r.verdict for r in rows if r.critic == critic]) for critic in critics},
        "cells": {
            cell: {
                critic: figures([r.verdict for r in rows if r.critic == critic and r.cell == cell])
                for critic in critics
                if any(r.critic == critic and r.cell == cell for r in rows)
            }
            for cell in cells
        },
    }


def compare(first: dict[str, Any], second: dict[str, Any], critics: list[str]) -> dict[str, Any]:
    """Per critic: both pass rates, the difference, and whether the two intervals are apart
    (the lower bound of one above the upper bound of the other)."""
    compared: dict[str, dict[str, Any]] = {}
    for critic in critics:
        a, b = first["overall"][critic]["pass_rate"], second["overall"][critic]["pass_rate"]
        if a["value"] is None or b["value"] is None:
            compared[critic] = {"difference": None, "beyond_intervals": False, "higher": None}
            continue
        apart = a["low"] > b["high"] or b["low"] > a["high"]
        higher = "a" if a["value"] > b["value"] else ("b" if b["value"] > a["value"] else None)
        compared[critic] = {
            "difference": round(a["value"] - b["value"], 4),
            "beyond_intervals": apart,
            "higher": higher,
        }
    return compared


def comparison_lines(report: dict[str, Any]) -> list[str]:
    """One line per critic: which model passes more often, and whether that is beyond the intervals."""
    comparison = report.get("comparison")
    if not comparison:
        return []
    names = {model["label"]: model["model"]["model"] for model in report["models"]}
    lines = []
    for critic, compared in comparison.items():
        if compared["difference"] is None:
            lines.append(f"{critic}: not compared (a model has no answered verdicts)")
        elif compared["higher"] is None:
            lines.append(f"{critic}: the same pass rate")
        else:
            other = "b" if compared["higher"] == "a" else "a"
            where = "beyond the intervals" if compared["beyond_intervals"] else "within the intervals: not shown"
            lines.append(
                f"{critic}: {compared['higher']} ({names[compared['higher']]}) passes more often than {other} "
                f"({names[other]}) by {abs(compared['difference']):.2f}, {where}"
            )
    return lines


def rate_text(figure: dict[str, Any]) -> str:
    rate = figure["pass_rate"]
    if rate["value"] is None:
        return "not measured"
    return f"{rate['value']:.2f} [{rate['low']:.2f}, {rate['high']:.2f}] ({figure['passed']}/{figure['judged']})"


def score_text(figure: dict[str, Any]) -> str:
    score = figure["mean_score"]
    return "n/a" if score["value"] is None else f"{score['value']:.2f} [{score['low']:.2f}, {score['high']:.2f}]"


def summary_table(report: dict[str, Any]) -> list[str]:
    """What `eval-model` prints: per model and critic, the pass rate and the mean score."""
    lines = [f"{'model':<6} {'critic':<13} {'pass rate [95%]':<32} {'mean score [95%]':<20} unanswered"]
    for model in report["models"]:
        for critic, figure in model["overall"].items():
            lines.append(
                f"{model['label']:<6} {critic:<13} {rate_text(figure):<32} {score_text(figure):<20} "
                f"{figure['unanswered']}"
            )
    return lines
