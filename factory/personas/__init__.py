"""Persona sources and casting."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.config import BankSource, BigFiveSource, MBTISource, Recipe, StatementsSource
from factory.personas.bank import load_bank
from factory.personas.big_five import sample_big_five
from factory.personas.casting import Cast, cast_dialogues
from factory.personas.mbti import sample_mbti
from factory.personas.statements import statement_personas
from factory.records import PersonaProfile

__all__ = ["Cast", "CastPlan", "PersonaPool", "build_persona_pool", "cast_dialogues", "plan", "plan_casts", "sampled_personas"]


@dataclass
class PersonaPool:
    personas: list[PersonaProfile] = field(default_factory=list)
    banks: list[dict[str, Any]] = field(default_factory=list)  # which bank revisions seeded it

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


def sampled_personas(source: Any, resolve_path: Callable[[str], Path], rng: random.Random) -> list[PersonaProfile] | None:
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
    for source in recipe.personas:
        sampled = sampled_personas(source, recipe.resolve_path, rng)
        if sampled is not None:
            pool.add(sampled)
        elif isinstance(source, BankSource):
            personas, provenance = load_bank(source)
            if source.count is not None and source.count < len(personas):
                personas = rng.sample(personas, source.count)
                provenance["personas"] = len(personas)
            pool.add(personas)
            pool.banks.append(provenance)
    return pool


def plan(recipe: Recipe) -> CastPlan:
    rng = random.Random(recipe.seed)
    pool = build_persona_pool(recipe, rng)
    return CastPlan(cast_dialogues(pool.personas, recipe.casting, rng, id_prefix=recipe.name), pool.banks)


def plan_casts(recipe: Recipe) -> list[Cast]:
    return plan(recipe).casts
