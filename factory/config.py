"""Recipes and settings.

A recipe is a YAML file validated by :class:`Recipe`; every model forbids unknown keys, so a typo
is an error that names the file and the field, never a silently ignored setting. Environment
variables are read here and nowhere else (:func:`environment_overrides`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from factory.errors import RecipeError

BUILTIN_PREFIX = "builtin:"
BUILTIN_DATA = {
    "synthetic_persona_chat": "synthetic_persona_chat/Synthetic-Persona-Chat_valid.csv",
    "ipip_neo_120": "big_five/ipip_neo_120.csv",
}
PACKAGE_DATA_DIR = Path(__file__).parent / "data"


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LLMConfig(_Config):
    """Where the LLM is and how hard to push it. No secrets here: the key comes from
    ``OPENAI_API_KEY`` (see :func:`environment_overrides`)."""

    base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL; none starts the embedded model."
    )
    model: str | None = Field(default=None, description="Model name sent with every request.")
    max_concurrency: int = Field(default=16, ge=1, le=4096)
    max_retries: int = Field(default=5, ge=0, le=50)
    timeout: float = Field(default=300.0, gt=0, description="Seconds before one request times out.")
    backoff_base: float = Field(default=0.5, gt=0)
    backoff_max: float = Field(default=30.0, gt=0)
    structured_output: Literal["json_schema", "json_object"] | None = Field(
        default=None,
        description="How critics ask for JSON: OpenAI's json_schema, or json_object with a schema "
        "(llama-cpp-python's server). Unset: json_object for the embedded model, json_schema otherwise.",
    )


class MBTISource(_Config):
    source: Literal["mbti"]
    count: int = Field(ge=1, le=100_000)
    types: list[str] | None = Field(default=None, description="Restrict to these types (e.g. [INTJ, ENFP]).")


class BigFiveSource(_Config):
    source: Literal["big_five"]
    count: int = Field(ge=1, le=100_000)
    statements_per_trait: int = Field(default=1, ge=1, le=4)


class StatementsSource(_Config):
    source: Literal["statements"]
    path: str = Field(
        default=f"{BUILTIN_PREFIX}synthetic_persona_chat",
        description="CSV or JSONL in the Synthetic-Persona-Chat format, relative to the recipe.",
    )
    count: int | None = Field(default=None, ge=1, description="Sample this many; all when unset.")


PersonaSource = Annotated[Union[MBTISource, BigFiveSource, StatementsSource], Field(discriminator="source")]


class CastingConfig(_Config):
    strategy: Literal["random"] = "random"
    group_size: Literal[2] = 2
    dialogues: int = Field(ge=1, le=10_000_000)


class GenerationConfig(_Config):
    min_turns: int = Field(default=6, ge=2)
    max_turns: int = Field(default=12, ge=2)
    few_shot: int = Field(default=1, ge=0, le=8, description="SPC conversations shown as examples.")
    few_shot_path: str = f"{BUILTIN_PREFIX}synthetic_persona_chat"
    temperature: float = Field(default=0.8, ge=0, le=2)
    max_tokens: int = Field(default=700, ge=16)
    batch_size: int = Field(default=16, ge=1, description="Rows per distilabel batch.")

    @model_validator(mode="after")
    def _bounds(self) -> GenerationConfig:
        if self.min_turns > self.max_turns:
            raise ValueError(f"min_turns ({self.min_turns}) is above max_turns ({self.max_turns})")
        return self


class HeuristicCriticConfig(_Config):
    enabled: bool = True
    max_duplicate_turn_ratio: float = Field(default=0.2, ge=0, le=1)
    max_ngram_repeats: int = Field(default=4, ge=2, description="Times one 4-gram may recur in a turn.")
    copy_min_words: int = Field(default=6, ge=2, description="Shortest persona statement counted as copied.")


class FaithfulnessCriticConfig(_Config):
    enabled: bool = True
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=200, ge=16)


class CriticsConfig(_Config):
    heuristic: HeuristicCriticConfig = Field(default_factory=HeuristicCriticConfig)
    faithfulness: FaithfulnessCriticConfig = Field(default_factory=FaithfulnessCriticConfig)


class RayConfig(_Config):
    address: str | None = Field(default=None, description="Existing cluster; none starts local Ray.")
    cpus_per_step: float | None = Field(default=None, gt=0, description="CPUs reserved per step actor.")
    replicas: int = Field(default=1, ge=1, description="Replicas of each LLM step.")


class OutputConfig(_Config):
    license: str = "cc-by-4.0"
    pretty_name: str | None = None
    samples_in_card: int = Field(default=3, ge=0, le=50)


class Recipe(_Config):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    seed: int = 0
    personas: list[PersonaSource] = Field(min_length=1)
    casting: CastingConfig
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    critics: CriticsConfig = Field(default_factory=CriticsConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    # Where the recipe was read from, so relative data paths resolve against it.
    base_dir: Path | None = Field(default=None, exclude=True)

    def resolve_path(self, value: str) -> Path:
        if value.startswith(BUILTIN_PREFIX):
            key = value[len(BUILTIN_PREFIX) :]
            if key not in BUILTIN_DATA:
                raise RecipeError(
                    f"unknown built-in data '{value}'; choose one of "
                    + ", ".join(BUILTIN_PREFIX + name for name in BUILTIN_DATA)
                )
            return PACKAGE_DATA_DIR / BUILTIN_DATA[key]
        path = Path(value).expanduser()
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return path

    def content_hash(self) -> str:
        """Hash of everything that shapes the data (not where the endpoint lives)."""
        payload = self.model_dump(mode="json", exclude={"llm": {"base_url"}, "ray": {"address"}})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _format_location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError("recipe file not found", path=path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise RecipeError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", path=path) from exc
    if not isinstance(raw, dict):
        raise RecipeError("a recipe is a YAML mapping (name, personas, casting, ...)", path=path)
    return parse_recipe(raw, path=path)


def parse_recipe(raw: dict[str, Any], *, path: str | Path | None = None) -> Recipe:
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        # Discriminated unions put the tag in the location; drop it so the field reads as written.
        loc = tuple(part for part in error["loc"] if part not in ("mbti", "big_five", "statements"))
        if error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling; unknown keys are errors)"
        else:
            message = error["msg"]
            if "input" in error and error["type"] not in ("missing",):
                message += f" (got {error['input']!r})"
        more = len(exc.errors()) - 1
        if more:
            message += f"; and {more} more problem{'s' if more > 1 else ''}"
        raise RecipeError(message, path=path, field=_format_location(loc) or None) from exc
    if path is not None:
        recipe.base_dir = Path(path).resolve().parent
    return recipe


def environment_overrides() -> dict[str, str | None]:
    """The environment variables the factory honours, read in one place."""
    return {
        "base_url": os.environ.get("PERSONA_FACTORY_BASE_URL") or os.environ.get("OPENAI_BASE_URL"),
        "model": os.environ.get("PERSONA_FACTORY_MODEL"),
        "api_key": os.environ.get("OPENAI_API_KEY"),
        "ray_address": os.environ.get("RAY_ADDRESS"),
    }


def apply_overrides(
    recipe: Recipe,
    *,
    base_url: str | None = None,
    model: str | None = None,
    ray_address: str | None = None,
) -> Recipe:
    """Flags beat the environment, which beats the recipe file."""
    env = environment_overrides()
    llm = recipe.llm.model_copy(
        update={
            "base_url": base_url or env["base_url"] or recipe.llm.base_url,
            "model": model or env["model"] or recipe.llm.model,
        }
    )
    ray = recipe.ray.model_copy(update={"address": ray_address or env["ray_address"] or recipe.ray.address})
    updated = recipe.model_copy(update={"llm": llm, "ray": ray})
    updated.base_dir = recipe.base_dir
    return updated
