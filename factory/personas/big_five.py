"""Big Five personas: a level per trait (1-7), described with IPIP-NEO-120 items.

A high level is described by the trait's positively keyed items, a low one by its reverse-keyed
items, turned into first-person statements ("Worry about things" -> "I worry about things.").
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from factory.personas.demographics import sample_demographics
from factory.personas.source import Made, SourceContext
from factory.recipes.personas import BigFiveSource
from factory.records import BigFiveScores, Demographics, PersonaProfile
from factory.settings import BUILTIN_DATA, PACKAGE_DATA_DIR
from factory.traits import BAND_LEVELS, BIG_FIVE_TRAITS, level_band

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


SPEAKING_STYLE = {
    "extraversion": (
        "talks readily and at length, with energy and exclamations",
        "speaks briefly and quietly, rarely starting a topic",
    ),
    "agreeableness": ("is warm, polite and quick to agree or reassure", "is blunt, sceptical and ready to argue"),
    "conscientiousness": (
        "is precise and orderly, with plans and details",
        "is casual and loose, wandering between topics",
    ),
    "neuroticism": (
        "sounds anxious and self-doubting, often mentions worries",
        "sounds calm and even, unbothered by setbacks",
    ),
    "openness": ("uses vivid, curious language and abstract ideas", "keeps to plain, concrete, familiar things"),
}


def speaking_style(scores: BigFiveScores) -> str:
    """How the profile talks, from its clearly high or low traits (PsyPlay's portrayal cues)."""
    cues = []
    for trait in BIG_FIVE_TRAITS:
        level = getattr(scores, trait)
        if level >= 5:
            cues.append(SPEAKING_STYLE[trait][0])
        elif level <= 3:
            cues.append(SPEAKING_STYLE[trait][1])
    return "; ".join(cues) if cues else "speaks in an even, unremarkable way"


def big_five_persona(
    index: int,
    scores: BigFiveScores,
    rng: random.Random,
    per_trait: int = 1,
    demographics: bool = True,
    names_taken: set[str] | None = None,
) -> PersonaProfile:
    name, demo = sample_demographics(rng, names_taken) if demographics else (None, Demographics())
    profile = ", ".join(
        f"{trait} {level_band(getattr(scores, trait))} ({getattr(scores, trait)}/7)" for trait in BIG_FIVE_TRAITS
    )
    who = f"{name}'s" if name else "This person's"
    statements = describe_scores(scores, rng, per_trait)
    # A digest of the content keeps ids distinct across sources and banks.
    digest = hashlib.sha256(
        f"{scores.model_dump_json()}|{name}|{demo.model_dump_json()}|{statements}".encode()
    ).hexdigest()[:8]
    return PersonaProfile(
        id=f"big_five-{index:05d}-{digest}",
        kind="big_five",
        name=name,
        demographics=demo,
        big_five=scores,
        statements=statements,
        description=f"{who} Big Five profile: {profile}.",
        speaking_style=speaking_style(scores),
        source=f"big_five sampler #{index}",
    )


def _quota_levels(trait: str, bands: Sequence[str], count: int, rng: random.Random) -> list[int]:
    """``count`` levels for one trait, the named bands sharing them as equally as count allows."""
    order = list(bands)
    rng.shuffle(order)
    levels = [rng.choice(BAND_LEVELS[order[i % len(order)]]) for i in range(count)]
    rng.shuffle(levels)
    return levels


def sample_scores(source: BigFiveSource, rng: random.Random) -> list[BigFiveScores]:
    columns: dict[str, list[int]] = {}
    for trait in BIG_FIVE_TRAITS:
        if source.sampling == "quota" and trait in source.quota:
            columns[trait] = _quota_levels(trait, source.quota[trait], source.count, rng)
        elif source.sampling == "distribution" and trait in source.distribution:
            columns[trait] = rng.choices(range(1, 8), weights=source.distribution[trait], k=source.count)
        else:
            columns[trait] = [rng.randint(1, 7) for _ in range(source.count)]
    return [BigFiveScores(**{trait: columns[trait][i] for trait in BIG_FIVE_TRAITS}) for i in range(source.count)]


def sample_big_five(
    source: BigFiveSource, rng: random.Random, names_taken: set[str] | None = None
) -> list[PersonaProfile]:
    taken = names_taken if names_taken is not None else set()
    return [
        big_five_persona(index, scores, rng, source.statements_per_trait, source.demographics, taken)
        for index, scores in enumerate(sample_scores(source, rng))
    ]


class BigFiveSampler:
    """``source: big_five``: Big Five profiles with IPIP statements, sampled (no model)."""

    def generative(self, settings: Any) -> bool:
        return False

    def attribution(self, settings: BigFiveSource) -> str | None:
        return "ipip"

    def prepare(self, settings: BigFiveSource, resolve_path: Callable[[str], Path]) -> None:
        return None

    def needs_embeddings(self, settings: BigFiveSource, prepared: None) -> bool:
        return False

    def make(self, settings: BigFiveSource, prepared: None, context: SourceContext) -> Made:
        return Made(sample_big_five(settings, context.rng, context.names_taken))
