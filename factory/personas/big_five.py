"""Big Five personas: a level per trait (1-7), described with IPIP-NEO-120 items.

A high level is described by the trait's positively keyed items, a low one by its reverse-keyed
items, turned into first-person statements ("Worry about things" -> "I worry about things.").
"""

from __future__ import annotations

import csv
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from factory.config import PACKAGE_DATA_DIR, BUILTIN_DATA
from factory.personas.demographics import sample_demographics
from factory.records import BIG_FIVE_TRAITS, BigFiveScores, PersonaProfile

TRAIT_BY_LETTER = dict(zip("OCEAN", BIG_FIVE_TRAITS))


@dataclass(frozen=True)
class IPIPItem:
    facet: str
    text: str
    trait: str
    key: int  # +1: agreeing signals a high level; -1: agreeing signals a low level


@lru_cache(maxsize=4)
def load_ipip_items(path: Path = PACKAGE_DATA_DIR / BUILTIN_DATA["ipip_neo_120"]) -> tuple[IPIPItem, ...]:
    with path.open(encoding="utf-8", newline="") as handle:
        return tuple(
            IPIPItem(
                facet=row["label_raw"],
                text=row["text"].strip(),
                trait=TRAIT_BY_LETTER[row["label_ocean"].strip()],
                key=int(row["key"]),
            )
            for row in csv.DictReader(handle)
        )


_PRONOUNS = [
    (re.compile(r"\byou are\b", re.I), "I am"),
    (re.compile(r"\byourself\b", re.I), "myself"),
    (re.compile(r"\byour\b", re.I), "my"),
    (re.compile(r"\byou\b", re.I), "me"),
]


def first_person(item_text: str) -> str:
    """IPIP items are imperative fragments; make them statements a persona would say."""
    text = item_text.strip().rstrip(".")
    for pattern, replacement in _PRONOUNS:
        text = pattern.sub(replacement, text)
    if text.lower().startswith("are "):
        text = "am " + text[4:]
    return f"I {text[0].lower()}{text[1:]}."


def level_band(level: int) -> str:
    if level <= 2:
        return "low"
    if level <= 5:
        return "average" if level == 4 else ("somewhat low" if level == 3 else "somewhat high")
    return "high"


def describe_scores(scores: BigFiveScores, rng: random.Random, per_trait: int) -> list[str]:
    items = load_ipip_items()
    statements: list[str] = []
    for trait in BIG_FIVE_TRAITS:
        level = getattr(scores, trait)
        if level == 4:
            continue  # an average level has no items that describe it
        wanted_key = 1 if level > 4 else -1
        pool = [item for item in items if item.trait == trait and item.key == wanted_key]
        statements.extend(first_person(item.text) for item in rng.sample(pool, min(per_trait, len(pool))))
    return statements


def big_five_persona(index: int, rng: random.Random, per_trait: int = 1) -> PersonaProfile:
    scores = BigFiveScores(**{trait: rng.randint(1, 7) for trait in BIG_FIVE_TRAITS})
    name, demographics = sample_demographics(rng)
    profile = ", ".join(f"{trait} {level_band(getattr(scores, trait))} ({getattr(scores, trait)}/7)" for trait in BIG_FIVE_TRAITS)
    return PersonaProfile(
        id=f"big_five-{index:05d}",
        kind="big_five",
        name=name,
        demographics=demographics,
        big_five=scores,
        statements=describe_scores(scores, rng, per_trait),
        description=f"{name}'s Big Five profile: {profile}.",
        source=f"big_five sampler #{index}",
    )


def sample_big_five(count: int, rng: random.Random, per_trait: int = 1) -> list[PersonaProfile]:
    return [big_five_persona(i, rng, per_trait) for i in range(count)]
