"""What changed between a version and the last released one: counts, pass rates per expert and per
persona cell, and the recipe settings that differ."""

from __future__ import annotations

from typing import Any

import yaml

from factory.records import dotted


def recipe_changes(before: str, after: str) -> list[str]:
    old, new = dotted(yaml.safe_load(before) or {}), dotted(yaml.safe_load(after) or {})
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))


def changelog(
    against: str, old_stats: dict[str, Any], old_recipe: str, stats: dict[str, Any], recipe_text: str
) -> dict[str, Any]:
    old_critics = {c["critic"]: c["pass_rate"] for c in old_stats.get("critics", [])}
    new_critics = {c["critic"]: c["pass_rate"] for c in stats.get("critics", [])}
    old_cells = {f"{c['dimension']}={c['cell']}": c["pass_rate"] for c in old_stats.get("cells", [])}
    new_cells = {f"{c['dimension']}={c['cell']}": c["pass_rate"] for c in stats.get("cells", [])}
    return {
        "against": against,
        "generated": [old_stats.get("generated"), stats.get("generated")],
        "accepted": [old_stats.get("accepted"), stats.get("accepted")],
        "critics": {
            k: [old_critics.get(k), new_critics.get(k)] for k in sorted(old_critics.keys() | new_critics.keys())
        },
        "cells": {k: [old_cells.get(k), new_cells.get(k)] for k in sorted(old_cells.keys() | new_cells.keys())},
        "recipe_changes": recipe_changes(old_recipe, recipe_text),
    }
