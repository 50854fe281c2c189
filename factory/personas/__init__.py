"""Persona sources and casting."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.personas.bank import load_bank
from factory.personas.big_five import sample_big_five
from factory.personas.casting import Cast, cast_dialogues
from factory.personas.mbti import sample_mbti
from factory.personas.statements import statement_personas
from factory.recipes import Recipe
from factory.recipes.personas import BankSource, BigFiveSource, MBTISource, StatementsSource
from factory.records import PersonaProfile

__all__ = [
    "Cast",
    "CastPlan",
    "PersonaPool",
    "build_persona_pool",
    "cast_dialogues",
    "plan",
    "plan_casts",
    "sampled_personas",
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


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sampled_personas(
    source: Any, resolve_path: Callable[[str], Path], rng: random.Random
) -> list[PersonaProfile] | None:
    """The personas of a sampler source (MBTI, Big Five, statement file), which need neither a
    model nor a bank; None for any other source."""
    if isinstance(source, MBTISource):
        return sample_mbti(source.count, rng, source.types)
    if isinstance(source, BigFiveSource):
        return sample_big_five(source, rng)
    if isinstance(source, StatementsSource):
        return statement_personas(resolve_path(source.path), source.count, rng)
    return None


def build_persona_pool(recipe: Recipe, rng: random.Random) -> PersonaPool:
    """All personas of the recipe's sources, in source order, deterministic for the recipe's seed."""
    pool = PersonaPool()
    for index, source in enumerate(recipe.personas):
        sampled = sampled_personas(source, recipe.resolve_path, rng)
        if sampled is None and isinstance(source, BankSource):
            sampled, provenance = load_bank(source)
            if source.count is not None and source.count < len(sampled):
                sampled = rng.sample(sampled, source.count)
                provenance["personas"] = len(sampled)
            pool.banks.append(provenance)
        if sampled is not None:
            pool.add(sampled)
            pool.inputs[f"personas[{index}]"] = digest([persona.model_dump(mode="json") for persona in sampled])
    return pool


def plan(recipe: Recipe) -> CastPlan:
    rng = random.Random(recipe.seed)
    pool = build_persona_pool(recipe, rng)
    inputs = dict(pool.inputs)
    few_shot = recipe.resolve_path(recipe.generation.few_shot_path)
    if recipe.generation.few_shot and few_shot.is_file():
        inputs["generation.few_shot_path"] = hashlib.sha256(few_shot.read_bytes()).hexdigest()[:16]
    return CastPlan(cast_dialogues(pool.personas, recipe.casting, rng, id_prefix=recipe.name), pool.banks, inputs)


def plan_casts(recipe: Recipe) -> list[Cast]:
    return plan(recipe).casts
