"""Recipes written by tests, small enough to run in seconds against a scripted endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def small_recipe(dialogues: int = 8, **overrides: Any) -> dict[str, Any]:
    recipe: dict[str, Any] = {
        "name": "e2e",
        "description": "end-to-end test recipe",
        "seed": 11,
        "personas": [
            {"source": "statements", "count": 6},
            {"source": "mbti", "count": 3},
            {"source": "big_five", "count": 3},
        ],
        "casting": {"dialogues": dialogues},
        "generation": {"min_turns": 4, "max_turns": 8, "few_shot": 1, "chunk_size": 4},
        "llm": {"max_retries": 2, "backoff_base": 0.05, "backoff_max": 0.2},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(recipe.get(key), dict):
            recipe[key] = {**recipe[key], **value}
        else:
            recipe[key] = value
    return recipe


def write_recipe(directory: Path, recipe: dict[str, Any], name: str = "recipe.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path
