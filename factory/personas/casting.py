"""Casting: which personas talk to each other in each dialogue."""

from __future__ import annotations

import random
from dataclasses import dataclass

from factory.config import CastingConfig
from factory.errors import RecipeError
from factory.records import PersonaProfile


@dataclass(frozen=True)
class Cast:
    dialogue_id: str
    speakers: tuple[PersonaProfile, ...]
    seed: int


def cast_dialogues(
    pool: list[PersonaProfile], casting: CastingConfig, rng: random.Random, *, id_prefix: str
) -> list[Cast]:
    """Random casting: each dialogue draws ``group_size`` distinct personas from the pool.

    Personas are drawn without replacement from a shuffled deck that is refilled when it runs
    out, so every persona speaks before any speaks twice.
    """
    if len(pool) < casting.group_size:
        raise RecipeError(
            f"the persona pool has {len(pool)} persona(s) but a dialogue needs {casting.group_size}",
            field="personas",
        )
    deck: list[PersonaProfile] = []
    casts = []
    for index in range(casting.dialogues):
        speakers: list[PersonaProfile] = []
        while len(speakers) < casting.group_size:
            if not deck:
                deck = list(pool)
                rng.shuffle(deck)
            candidate = deck.pop()
            if all(candidate.id != chosen.id for chosen in speakers):
                speakers.append(candidate)
            else:
                deck.insert(0, candidate)
        casts.append(
            Cast(dialogue_id=f"{id_prefix}-{index:06d}", speakers=tuple(speakers), seed=rng.randrange(2**31))
        )
    return casts
