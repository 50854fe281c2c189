"""Personas for a run: every source of the recipe into one pool, then cast into dialogues."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from factory.dataset.dialogues import persona_split
from factory.personas.casting import Cast, CellTopUp, cast_dialogues, cast_within_splits
from factory.personas.source import SourceContext
from factory.personas.sources import source_for
from factory.recipes import Recipe
from factory.records import PersonaProfile

__all__ = [
    "Cast",
    "CastPlan",
    "PersonaPool",
    "build_persona_pool",
    "cast_dialogues",
    "plan",
]


@dataclass
class PersonaPool:
    personas: list[PersonaProfile] = field(default_factory=list)
    banks: list[dict[str, Any]] = field(default_factory=list)  # which bank revisions seeded it
    inputs: dict[str, str] = field(default_factory=dict)  # a digest of each source's personas

    def add(self, personas: list[PersonaProfile]) -> None:
        # One persona can reach the pool twice (two banks, or a bank and its own seeds); it speaks once.
        known = {p.id for p in self.personas}
        for persona in personas:
            if persona.id not in known:
                known.add(persona.id)
                self.personas.append(persona)


@dataclass
class CastPlan:
    casts: list[Cast]
    banks: list[dict[str, Any]]
    # What each input of the recipe held, by where the recipe names it (``personas[0]``): a resumed
    # run must be made from the same inputs, not only from the same recipe text.
    inputs: dict[str, str] = field(default_factory=dict)
    top_up: CellTopUp | None = None  # casting.accepted_per_cell: new casts for the cells left short


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_persona_pool(recipe: Recipe, rng: random.Random) -> PersonaPool:
    """All personas of the recipe's sources, in source order, deterministic for the recipe's seed."""
    pool = PersonaPool()
    context = SourceContext(recipe.resolve_path, rng)
    for index, settings in enumerate(recipe.personas):
        made = source_for(settings).make(settings, None, context)
        if made.bank is not None:
            pool.banks.append(made.bank)
        pool.add(made.personas)
        pool.inputs[f"personas[{index}]"] = digest([persona.model_dump(mode="json") for persona in made.personas])
    return pool


def split_by_id(persona: PersonaProfile, *, test: float, seed: int) -> str:
    return persona_split(persona.id, test, seed)


def plan(recipe: Recipe) -> CastPlan:
    rng = random.Random(recipe.seed)
    pool = build_persona_pool(recipe, rng)
    inputs = dict(pool.inputs)
    few_shot = recipe.resolve_path(recipe.generation.few_shot_path)
    if recipe.generation.few_shot and few_shot.is_file():
        inputs["generation.few_shot_path"] = hashlib.sha256(few_shot.read_bytes()).hexdigest()[:16]
    splits = recipe.output.splits
    split_of = None if splits is None else partial(split_by_id, test=splits.test, seed=recipe.seed)
    if split_of is None:
        casts = cast_dialogues(pool.personas, recipe.casting, rng, id_prefix=recipe.name)
    else:
        casts = cast_within_splits(pool.personas, recipe.casting, rng, id_prefix=recipe.name, split_of=split_of)
    top_up = (
        CellTopUp(pool.personas, recipe.casting, recipe.seed, recipe.name, split_of)
        if recipe.casting.accepted_per_cell
        else None
    )
    return CastPlan(casts, pool.banks, inputs, top_up)
