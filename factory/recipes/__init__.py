"""Recipes: the YAML files that say what to make, validated by :class:`Recipe` (a dialogue run)
and :class:`PersonaBankRecipe` (a persona bank).

Every model forbids unknown keys, so a typo is an error that names the file and the field, never a
silently ignored setting. The sections live beside this module, one per concern (``llm``,
``personas``, ``generation``, ``critics``); loading and the command-line overrides live here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from factory.errors import RecipeError
from factory.recipes.base import MAY_CHANGE_ON_RESUME, _Config
from factory.recipes.critics import CriticsConfig
from factory.recipes.generation import GenerationConfig
from factory.recipes.judges import JudgeLLMConfig
from factory.recipes.llm import EmbeddingsConfig, LLMConfig
from factory.recipes.personas import (
    BankBuildSource,
    BankOutputConfig,
    CastingConfig,
    HubPersonasSource,
    PersonaSource,
    source_kinds,
)
from factory.settings import environment, resolve_data_path


def recipe_hash(recipe: BaseModel) -> str:
    """Hash of everything in a recipe that shapes the data (not where the endpoint or cluster is)."""
    payload = recipe.model_dump(mode="json", exclude={"llm": {"base_url"}, "ray": {"address"}})
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class RayConfig(_Config):
    enabled: bool = Field(
        default=True, description="Run the dialogues on Ray workers; false runs them in this process (no Ray at all)."
    )
    address: str | None = Field(default=None, description="Existing cluster; none starts local Ray.")
    workers: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = Field(
        default="auto",
        description="Engine workers (async Ray actors), spread over the nodes; they share the endpoint's concurrency. "
        "auto: one per alive node (or as many as cpus_per_worker fits on each), so a cluster is used whole.",
    )
    cpus_per_worker: float | None = Field(default=None, gt=0, description="CPUs reserved per worker.")


class MessagesConfig(_Config):
    """The ``messages`` config: accepted dialogues as chat fine-tuning rows."""

    speakers: Literal["all", "first"] = Field(
        default="first",
        description="first: one row per dialogue, from the assistant's side (or the first speaker's); all: one row "
        "per speaker, each with that speaker's persona as the system prompt.",
    )


class SplitsConfig(_Config):
    """Persona-disjoint train and test splits of the ``messages`` config."""

    train: float = Field(default=0.9, gt=0, lt=1)
    test: float = Field(default=0.1, gt=0, lt=1)

    @model_validator(mode="after")
    def _whole(self) -> SplitsConfig:
        if abs(self.train + self.test - 1) > 1e-9:
            raise ValueError(f"train and test add up to {self.train + self.test:g}, not 1")
        return self


class OutputConfig(_Config):
    license: str = "cc-by-4.0"
    pretty_name: str | None = None
    samples_in_card: int = Field(default=3, ge=0, le=50)
    review_samples: int = Field(
        default=5, ge=0, le=200, description="Accepted dialogues a reviewer must read (and half as many rejected)."
    )
    review_labels: bool = Field(
        default=True,
        description="Approval waits until every sampled dialogue has a reviewer's label (in character, quality, flags).",
    )
    messages: MessagesConfig = Field(default_factory=MessagesConfig)
    compare_to: str | None = Field(
        default=None,
        description="Real persona conversations (an SPC CSV or JSONL, e.g. builtin:synthetic_persona_chat) the card "
        "measures the accepted split against: Frechet distance and precision/recall over sentence embeddings of turns.",
    )
    splits: SplitsConfig | None = Field(
        default=None,
        description="Split the messages config into persona-disjoint train and test (no persona in both); unset: "
        "one train split.",
    )


class Recipe(_Config):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    seed: int = 0
    personas: list[PersonaSource] = Field(min_length=1)
    casting: CastingConfig
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    critics: CriticsConfig = Field(default_factory=CriticsConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    ray: RayConfig = Field(json_schema_extra=MAY_CHANGE_ON_RESUME, default_factory=RayConfig)
    output: OutputConfig = Field(json_schema_extra=MAY_CHANGE_ON_RESUME, default_factory=OutputConfig)

    # Where the recipe was read from, so relative data paths resolve against it.
    base_dir: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _turn_order_fits_the_cast(self) -> Recipe:
        role_play = self.generation.role_play
        if self.generation.mode != "spc" and role_play.turn_order == "alternate" and self.casting.group_size != 2:
            raise ValueError(
                f"generation.role_play.turn_order 'alternate' needs exactly two speakers, and casting.group_size is "
                f"{self.casting.group_size}; use round_robin or moderator"
            )
        positions = [key for key in role_play.agents if key.startswith("speaker")]
        beyond = [key for key in positions if int(key[len("speaker") :]) > self.casting.group_size]
        if beyond:
            raise ValueError(
                f"generation.role_play.agents names {', '.join(beyond)}, but dialogues have "
                f"{self.casting.group_size} speakers"
            )
        if self.llm.batch and self.generation.mode != "spc":
            raise ValueError(
                "llm.batch is for generation.mode 'spc' (one call per dialogue); a role-play asks turn by turn"
            )
        return self

    @model_validator(mode="after")
    def _no_llm_in_the_persona_sources(self) -> Recipe:
        for index, source in enumerate(self.personas):
            if isinstance(source, HubPersonasSource) and source.statements_by == "llm":
                raise ValueError(
                    f"personas[{index}].statements_by llm writes the statements with the LLM, which a dialogue run "
                    "does not do for its personas: build a bank with it (persona-factory personas build) and seed "
                    "the run with source: bank"
                )
        return self

    def resolve_path(self, value: str) -> Path:
        return resolve_data_path(value, self.base_dir)

    def content_hash(self) -> str:
        return recipe_hash(self)


class PersonaBankRecipe(_Config):
    """What `persona-factory personas build` reads: where personas come from, and the LLM and
    embeddings the generative sources use."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    seed: int = 0
    sources: list[BankBuildSource] = Field(min_length=1)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    embeddings: EmbeddingsConfig = Field(default_factory=EmbeddingsConfig)
    output: BankOutputConfig = Field(default_factory=BankOutputConfig)

    base_dir: Path | None = Field(default=None, exclude=True)

    def resolve_path(self, value: str) -> Path:
        return resolve_data_path(value, self.base_dir)

    def content_hash(self) -> str:
        return recipe_hash(self)


def _format_location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


RecipeModel = TypeVar("RecipeModel", "Recipe", "PersonaBankRecipe")


RUN_SOURCES = source_kinds(PersonaSource)
BANK_SOURCES = source_kinds(BankBuildSource)
SOURCE_TAGS = tuple(dict.fromkeys(RUN_SOURCES + BANK_SOURCES))


def load_recipe(path: str | Path, model: type[RecipeModel] = Recipe) -> RecipeModel:  # type: ignore[assignment]  # mypy cannot give a TypeVar a default; the default is the dialogue Recipe
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
    return parse_recipe(raw, path=path, model=model)


def parse_recipe(
    raw: dict[str, Any],
    *,
    path: str | Path | None = None,
    model: type[RecipeModel] = Recipe,  # type: ignore[assignment]  # as in load_recipe: the default is the dialogue Recipe
) -> RecipeModel:
    try:
        recipe = model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        # A source's discriminated union puts its tag after the list index; drop it there (and only
        # there: a field may share a tag's name) so the field reads as written.
        where = error["loc"]
        loc = tuple(
            part for at, part in enumerate(where) if not (part in SOURCE_TAGS and at and isinstance(where[at - 1], int))
        )
        if error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling; unknown keys are errors)"
        elif error["type"] == "union_tag_not_found":  # a source written without its kind
            kinds = BANK_SOURCES if model is not Recipe else RUN_SOURCES
            message = f"`source` is missing: say which kind of source this is, one of {', '.join(kinds)}"
        else:
            message = error["msg"].removeprefix("Value error, ")
            # a value is worth echoing; a whole section (a check across its fields) is not
            if "input" in error and error["type"] not in ("missing",) and not isinstance(error["input"], dict | list):
                message += f" (got {error['input']!r})"
        more = len(exc.errors()) - 1
        if more:
            message += f"; and {more} more problem{'s' if more > 1 else ''}"
        raise RecipeError(message, path=path, field=_format_location(loc) or None) from exc
    if path is not None:
        recipe.base_dir = Path(path).resolve().parent
    return recipe


def apply_overrides(
    recipe: RecipeModel,
    *,
    base_url: str | None = None,
    model: str | None = None,
    ray_address: str | None = None,
    judge_base_url: str | None = None,
    judge_model: str | None = None,
) -> RecipeModel:
    """Flags beat the environment, which beats the recipe file."""
    env = environment()
    llm = recipe.llm.model_copy(
        update={
            "base_url": base_url or env.base_url or recipe.llm.base_url,
            "model": model or env.model or recipe.llm.model,
        }
    )
    update: dict[str, Any] = {"llm": llm}
    if isinstance(recipe, Recipe):
        update["ray"] = recipe.ray.model_copy(update={"address": ray_address or env.ray_address or recipe.ray.address})
        judge = judge_override(judge_base_url, judge_model)
        if judge is not None:
            update["critics"] = recipe.critics.model_copy(update={"llm": judge.over(recipe.critics.llm)})
    updated = recipe.model_copy(update=update)
    updated.base_dir = recipe.base_dir
    return updated


def judge_override(base_url: str | None = None, model: str | None = None) -> JudgeLLMConfig | None:
    """The judge endpoint named by flags (or PERSONA_FACTORY_JUDGE_BASE_URL / _MODEL), if any."""
    env = environment()
    base_url, model = base_url or env.judge_base_url, model or env.judge_model
    if not base_url and not model:
        return None
    return JudgeLLMConfig.model_validate(
        {**({"base_url": base_url} if base_url else {}), **({"model": model} if model else {})}
    )
