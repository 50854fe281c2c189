"""The Synthetic-Persona-Chat generator prompt.

After Jandaghi et al. (2023): the profiles of two users, then a natural conversation between them
that implicitly reflects their profiles, with conversations from the SPC data as few-shot examples.
Speakers are always labelled ``User 1`` / ``User 2`` so that parsing does not depend on names.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from factory.personas.statements import SPCRow, load_spc_rows
from factory.records import DialogueRecord, PersonaProfile

GENERATOR_SYSTEM = (
    "You write natural, engaging conversations between people with given personas. "
    "Each speaker's lines implicitly reflect their own profile: show who they are through what they "
    "say, never by reciting or copying their profile sentences. Speakers take turns. Write one "
    "utterance per line, each starting with the speaker label ('User 1:', 'User 2:', ...), and nothing else."
)

INTRO = (
    "Here, we list the profiles of two users, user 1 and user 2, followed by an interesting and "
    "natural conversation between user 1 and user 2, which implicitly reflects their user profiles."
)


def _intro(count: int) -> str:
    return (
        f"Here, we list the profiles of {count} users, {_labels(count).lower()}, followed by an interesting "
        "and natural conversation between them, which implicitly reflects their user profiles."
    )


@dataclass(frozen=True)
class FewShotExample:
    id: str
    profiles: tuple[tuple[str, ...], ...]  # one per speaker
    lines: tuple[tuple[int, str], ...]  # (speaker index, text)

    @classmethod
    def from_record(cls, record: DialogueRecord, max_turns: int) -> FewShotExample:
        """A dialogue of an earlier round, as an example for the next (the Generator-Critic loop)."""
        index = {persona.id: n for n, persona in enumerate(record.speakers)}
        return cls(
            id=record.id,
            profiles=tuple(tuple(persona.statements) for persona in record.speakers),
            lines=tuple((index[turn.speaker], turn.text) for turn in record.turns[:max_turns]),
        )


@lru_cache(maxsize=8)
def _examples_from(path: Path) -> tuple[SPCRow, ...]:
    return tuple(row for row in load_spc_rows(path) if row.conversation)


def pick_few_shot(path: Path, count: int, max_turns: int, rng: random.Random) -> list[FewShotExample]:
    """``count`` SPC conversations, cut to ``max_turns`` utterances so they model the length asked for."""
    if count == 0:
        return []
    rows = _examples_from(path)
    chosen = rng.sample(rows, min(count, len(rows)))
    return [FewShotExample(id=row.id, profiles=row.personas, lines=row.conversation[:max_turns]) for row in chosen]


def _profile_block(label: str, statements: list[str] | tuple[str, ...], extra: str = "") -> str:
    lines = [f"{label} Profile:"] + [f"- {statement}" for statement in statements]
    if extra:
        lines.append(f"- ({extra})")
    return "\n".join(lines)


def persona_hint(persona: PersonaProfile) -> str:
    """What a model should know beyond the statements: name, circumstances, personality frame."""
    parts = []
    if persona.name:
        parts.append(f"name: {persona.name}")
    demo = persona.demographics
    parts.extend(
        f"{field}: {value}"
        for field, value in (("age", demo.age), ("occupation", demo.occupation), ("lives in", demo.location))
        if value is not None
    )
    if persona.mbti:
        parts.append(f"MBTI type: {persona.mbti}")
    if persona.big_five:
        parts.append(persona.description)
    if persona.speaking_style:
        parts.append(f"speaking style: {persona.speaking_style}")
    return "; ".join(parts)


def _labels(count: int) -> str:
    labels = [f"User {n}" for n in range(1, count + 1)]
    return ", ".join(labels[:-1]) + f" and {labels[-1]}"


ROLE_NOTES = {
    "user": "a person chatting with an AI assistant, asking for help in their own words",
    "assistant": "an AI assistant who helps the user, speaking in the persona's style",
}


def generator_messages(
    speakers: list[PersonaProfile],
    examples: list[FewShotExample],
    *,
    min_turns: int,
    max_turns: int,
    roles: tuple[str, ...] = (),
) -> list[dict[str, str]]:
    """The generator prompt for any number of speakers; with ``roles``, each speaker is told
    the part they play (a user simulator talking to an assistant)."""
    blocks = [INTRO if len(speakers) == 2 and not roles else _intro(len(speakers)), ""]
    for number, example in enumerate(examples, start=1):
        blocks.append(f"Example {number}:")
        blocks.extend(_profile_block(f"User {n}", profile) for n, profile in enumerate(example.profiles, start=1))
        blocks.append("Conversation:")
        blocks.extend(f"User {speaker + 1}: {text}" for speaker, text in example.lines)
        blocks.append("")
    blocks.append(f"Now the {len(speakers)} users of this conversation:")
    for index, persona in enumerate(speakers, start=1):
        hint = persona_hint(persona)
        if roles:
            hint = f"plays {ROLE_NOTES.get(roles[index - 1], roles[index - 1])}" + (f"; {hint}" if hint else "")
        blocks.append(_profile_block(f"User {index}", persona.statements, hint))
    if len(speakers) == 2:
        order = "alternating User 1 and User 2, starting with User 1"
    else:
        order = (
            f"taking turns among {_labels(len(speakers))} (never the same speaker twice in a row), starting with User 1"
        )
    blocks.append(f"Write their conversation: between {min_turns} and {max_turns} utterances, {order}.")
    blocks.append("Conversation:")
    return [
        {"role": "system", "content": GENERATOR_SYSTEM},
        {"role": "user", "content": "\n".join(blocks)},
    ]
