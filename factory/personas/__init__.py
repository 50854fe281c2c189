"""Persona sources and casting."""

from __future__ import annotations

import random

from factory.config import BigFiveSource, MBTISource, Recipe, StatementsSource
from factory.personas.big_five import sample_big_five
from factory.personas.casting import Cast, cast_dialogues
from factory.personas.mbti import sample_mbti
from factory.personas.statements import statement_personas
from factory.records import PersonaProfile

__all__ = ["Cast", "build_persona_pool", "cast_dialogues", "plan_casts"]


def build_persona_pool(recipe: Recipe, rng: random.Random) -> list[PersonaProfile]:
    """All personas of the recipe's sources, in source order, deterministic for the recipe's seed."""
    pool: list[PersonaProfile] = []
    for source in recipe.personas:
        if isinstance(source, MBTISource):
            pool.extend(sample_mbti(source.count, rng, source.types))
        elif isinstance(source, BigFiveSource):
            pool.extend(sample_big_five(source.count, rng, source.statements_per_trait))
        elif isinstance(source, StatementsSource):
            pool.extend(statement_personas(recipe.resolve_path(source.path), source.count, rng))
    return pool


def plan_casts(recipe: Recipe) -> list[Cast]:
    rng = random.Random(recipe.seed)
    return cast_dialogues(build_persona_pool(recipe, rng), recipe.casting, rng, id_prefix=recipe.name)
