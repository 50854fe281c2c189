"""The factory's settings from outside any recipe, read in one place: the environment variables
it honours, and where the data shipped inside the package lives.

An API key or Hub token is only ever read here and handed on in memory; nothing writes it down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from factory.errors import RecipeError

BUILTIN_PREFIX = "builtin:"

BUILTIN_DATA = {
    "synthetic_persona_chat": "synthetic_persona_chat/Synthetic-Persona-Chat_valid.csv",
    "ipip_neo_120": "big_five/ipip_neo_120.csv",
    "usp": "usp",
}
PACKAGE_DATA_DIR = Path(__file__).parent / "data"
PACKAGED_RECIPES = PACKAGE_DATA_DIR / "pipelines"


def resolve_data_path(value: str, base_dir: Path | None) -> Path:
    """``builtin:NAME`` is data shipped with the package; other relative paths start at ``base_dir``."""
    if value.startswith(BUILTIN_PREFIX):
        key = value[len(BUILTIN_PREFIX) :]
        if key not in BUILTIN_DATA:
            raise RecipeError(
                f"unknown built-in data '{value}'; choose one of "
                + ", ".join(BUILTIN_PREFIX + name for name in BUILTIN_DATA)
            )
        return PACKAGE_DATA_DIR / BUILTIN_DATA[key]
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


@dataclass(frozen=True)
class Environment:
    """The environment variables the factory honours."""

    base_url: str | None
    model: str | None
    judge_base_url: str | None
    judge_model: str | None
    reply_cache: str | None
    ray_address: str | None
    hf_endpoint: str | None
    hf_token: str | None

    def __repr__(self) -> str:  # never print a secret
        return (
            f"Environment(base_url={self.base_url!r}, model={self.model!r}, judge_base_url={self.judge_base_url!r}, "
            f"judge_model={self.judge_model!r}, ray_address={self.ray_address!r})"
        )


def environment() -> Environment:
    return Environment(
        base_url=os.environ.get("PERSONA_FACTORY_BASE_URL") or os.environ.get("OPENAI_BASE_URL"),
        model=os.environ.get("PERSONA_FACTORY_MODEL"),
        judge_base_url=os.environ.get("PERSONA_FACTORY_JUDGE_BASE_URL") or None,
        judge_model=os.environ.get("PERSONA_FACTORY_JUDGE_MODEL") or None,
        reply_cache=os.environ.get("PERSONA_FACTORY_CACHE") or None,
        ray_address=os.environ.get("RAY_ADDRESS"),
        hf_endpoint=os.environ.get("HF_ENDPOINT") or None,
        hf_token=os.environ.get("HF_TOKEN") or None,
    )
