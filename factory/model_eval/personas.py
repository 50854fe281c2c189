"""The personas a model is evaluated on: those of one split of a version's ``messages`` config
(the test split by default, whose personas no training row holds), each with a partner for the
user simulator to play, drawn from the version's other personas."""

from __future__ import annotations

import io
import random
import re
from dataclasses import dataclass

import pyarrow.parquet as pq

from factory.dataset.card import chat_file
from factory.errors import InputError
from factory.records import PersonaProfile
from factory.rejudge.sources import FactoryVersion, is_dialogue_shard


@dataclass(frozen=True)
class EvalPersona:
    """A persona to play, the partner the simulator plays opposite it, and its report cell."""

    persona: PersonaProfile
    partner: PersonaProfile
    cell: str


def persona_cell(persona: PersonaProfile) -> str:
    """The cell a persona's figures are reported in: its MBTI type, else its kind."""
    return f"mbti {persona.mbti}" if persona.mbti else persona.kind


def split_personas(version: FactoryVersion, split: str, count: int | None, seed: int) -> list[EvalPersona]:
    """Up to ``count`` personas of ``split`` (all when None), in a seeded order, each with a partner."""
    ids = _split_persona_ids(version, split)
    profiles = _profiles(version)
    missing = sorted(ids - profiles.keys())
    if missing:
        raise InputError(f"persona {missing[0]!r} of the {split} split is in none of its dialogues", path=version.where)
    rng = random.Random(seed)
    chosen = sorted(ids)
    rng.shuffle(chosen)
    chosen = chosen[:count] if count is not None else chosen
    others = sorted(profiles)
    if len(others) < 2:
        raise InputError("the version has one persona: the simulator needs another to play", path=version.where)
    paired = []
    for persona_id in chosen:
        partner = rng.choice([other for other in others if other != persona_id])
        paired.append(EvalPersona(profiles[persona_id], profiles[partner], persona_cell(profiles[persona_id])))
    return paired


def _split_persona_ids(version: FactoryVersion, split: str) -> set[str]:
    """The persona of every row of the split's ``messages`` shards, named as the writer names them
    with one split (``train``) or with two."""
    prefixes = {chat_file(split, layout) for layout in (["train"], ["train", "test"]) if split in layout}
    names = [name for name in version.files if (m := _SHARD.fullmatch(name)) and m.group(1) in prefixes]
    if not names:
        have = sorted({m.group(1) for name in version.files if (m := _SHARD.fullmatch(name))})
        raise InputError(
            f"the version has no messages {split} split (its shards: {', '.join(have) or 'none'}); "
            "output.splits in the recipe writes train and test",
            path=version.where,
        )
    ids: set[str] = set()
    for name in names:
        table = pq.read_table(io.BytesIO(version.files[name]), columns=["persona"])
        ids.update(str(value) for value in table.column("persona").to_pylist())
    if not ids:
        raise InputError(f"the messages {split} split has no rows", path=version.where)
    return ids


_SHARD = re.compile(r"data/(messages(?:-[a-z]+)?)-\d{5}-of-\d{5}\.parquet")


def _profiles(version: FactoryVersion) -> dict[str, PersonaProfile]:
    """Every speaker of the version's dialogues (either split), by persona id."""
    profiles: dict[str, PersonaProfile] = {}
    for name, data in sorted(version.files.items()):
        if not is_dialogue_shard(name):
            continue
        for row in pq.read_table(io.BytesIO(data), columns=["speakers"]).column("speakers").to_pylist():
            for speaker in row:
                profiles.setdefault(speaker["id"], PersonaProfile.model_validate(speaker))
    return profiles
