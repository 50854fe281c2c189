"""MBTI personas: the 16 types, each with its four axes, a description and first-person
statements, sampled deterministically for a seed."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from factory.errors import RecipeError
from factory.personas.demographics import sample_demographics
from factory.personas.source import Made, SourceContext
from factory.recipes.personas import MBTISource
from factory.records import PersonaProfile
from factory.traits import MBTI_TYPES


def mbti_persona(code: str, index: int, rng: random.Random, names_taken: set[str] | None = None) -> PersonaProfile:
    kind = MBTI_TYPES[code]
    name, demographics = sample_demographics(rng, names_taken)
    axes = "; ".join(kind.axes)
    digest = hashlib.sha256(f"{code}|{name}|{demographics.model_dump_json()}".encode()).hexdigest()[:8]
    return PersonaProfile(
        id=f"mbti-{index:05d}-{code.lower()}-{digest}",
        kind="mbti",
        name=name,
        demographics=demographics,
        mbti=code,
        statements=list(kind.statements),
        description=f"{name} is an {code} ({kind.nickname}). {kind.description} Axes: {axes}.",
        source=f"mbti sampler #{index}",
    )


def sample_mbti(
    count: int, rng: random.Random, types: list[str] | None = None, names_taken: set[str] | None = None
) -> list[PersonaProfile]:
    """Sample ``count`` MBTI personas; types cycle so every allowed type appears before any repeats."""
    allowed = [t.upper() for t in types] if types else list(MBTI_TYPES)
    unknown = [t for t in allowed if t not in MBTI_TYPES]
    if unknown:
        raise RecipeError(
            f"unknown MBTI type(s) {', '.join(unknown)}; valid types are {', '.join(MBTI_TYPES)}",
            field="personas.types",
        )
    order = list(allowed)
    rng.shuffle(order)
    taken = names_taken if names_taken is not None else set()
    return [mbti_persona(order[i % len(order)], i, rng, taken) for i in range(count)]


class MBTISampler:
    """``source: mbti``: personas of the 16 types, sampled (no model)."""

    def generative(self, settings: Any) -> bool:
        return False

    def attribution(self, settings: MBTISource) -> str | None:
        return None

    def prepare(self, settings: MBTISource, resolve_path: Callable[[str], Path]) -> None:
        return None

    def needs_embeddings(self, settings: MBTISource, prepared: None) -> bool:
        return False

    def make(self, settings: MBTISource, prepared: None, context: SourceContext) -> Made:
        return Made(sample_mbti(settings.count, context.rng, settings.types, context.names_taken))
