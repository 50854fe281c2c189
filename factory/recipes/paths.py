"""Where a recipe named on the command line is."""

from __future__ import annotations

from pathlib import Path

from factory.settings import PACKAGED_RECIPES


def resolve_recipe_path(recipe: str) -> Path:
    """A path, or the name of a recipe shipped with the package (``quickstart``)."""
    path = Path(recipe)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    packaged = PACKAGED_RECIPES / f"{recipe}.yaml"
    return packaged if packaged.is_file() else path
