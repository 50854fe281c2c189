"""A `critics eval` report as a recipe points at it (``critics.report``), to show in the card how
far to trust the critics; checked when the run starts, so that a file that is not such a report
is an error there and not a broken table in the card."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from factory.errors import RecipeError

REPORT_FIELDS = ("expert", "examples", "accuracy", "measure")


def load_critic_report(location: str | None, resolve: Callable[[str], Path]) -> dict[str, Any] | None:
    if location is None:
        return None
    path = resolve(location)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecipeError(f"cannot read the critics report {path}: {exc}", field="critics.report") from exc
    if not isinstance(report, dict):
        report = {}
    experts = report.get("experts")
    if not isinstance(experts, list) or not experts or not all(_is_row(row) for row in experts):
        raise RecipeError(
            f"{path} is not a `persona-factory critics eval` report (it needs experts with "
            f"{', '.join(REPORT_FIELDS)}); write one with `critics eval --out`",
            field="critics.report",
        )
    return report


def _is_row(row: object) -> bool:
    return isinstance(row, dict) and all(key in row for key in REPORT_FIELDS)
